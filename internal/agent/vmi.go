package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"

	"secaas/internal/hostpath"
	"secaas/internal/linuxkern"
	"secaas/internal/tenant"
	"secaas/internal/vmi"
)

// trafficViews holds, by "TID/VM", which of a VM's ports answer: anomaly
// detection feeds it from the VM's mirror, memory monitoring cross-views it
// with the sockets in the VM's memory.
type trafficViews struct {
	mu sync.Mutex
	m  map[string]*vmi.Responses
}

// get returns the view of a VM at addr (an address that does not parse
// matches any), making it on first use.
func (t *trafficViews) get(id, addr string) *vmi.Responses {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*vmi.Responses{}
	}
	if r, ok := t.m[id]; ok {
		return r
	}
	a, _ := netip.ParseAddr(addr)
	r := vmi.NewResponses(a)
	t.m[id] = r
	return r
}

// vmiWatch is the memory monitoring of one VM.
type vmiWatch struct{ *worker }

func (w *vmiWatch) base() *worker { return w.worker }

// syncVMILocked starts the memory monitors the desired state asks for and
// stops the others. Unlike anomaly detection, memory monitoring needs no
// switch port: only the guest's RAM file on this host.
func (a *Agent) syncVMILocked() {
	if a.vmis == nil {
		a.vmis = map[string]*vmiWatch{}
	}
	wants := a.wantedPolicies(func(vm *tenant.VM) any {
		if vm.VMI == nil {
			return nil
		}
		return vm.VMI
	})
	stopStale(a.vmis, keys(wants))
	for id, w := range wants {
		if _, running := a.vmis[id]; running {
			continue
		}
		interval, ind, err := w.VM.VMI.Params()
		if err != nil { // validated earlier; never start a bad policy
			continue
		}
		tid, ten, name := w.TID, w.Tenant, w.VM.Name
		if w.Host.Memory == "" || a.Host == nil {
			why := fmt.Sprintf("port %s has no RAM file in the host inventory", w.VM.Port)
			if a.Host == nil {
				why = "this node has no host roots configured"
			}
			a.vmis[id] = &vmiWatch{startWorker(w.Key, func(ctx context.Context) {
				a.onEvent(Event{Kind: "vmi.waiting", Tenant: ten, TID: tid, VM: name, Subject: "vm/" + name, Detail: why})
			})}
			continue
		}
		memory, host, rec, vmIP := w.Host.Memory, a.Host, w.Host, w.VM.IP
		a.vmis[id] = &vmiWatch{startWorker(w.Key, func(ctx context.Context) {
			a.onEvent(Event{Kind: "vmi.started", Tenant: ten, TID: tid, VM: name, Subject: "vm/" + name,
				Detail: fmt.Sprintf("every %s", interval)})
			open := func(name string) (*os.File, error) { return host.OpenFile(name, os.O_RDONLY, 0) }
			own := func() []linuxkern.Region { return a.kgates.owned(id) }
			var image *linuxkern.Image
			if rec.Kernel != "" && ind[vmi.Integrity] {
				var err error
				if image, err = loadKernelImage(host, rec.Kernel); err != nil {
					a.onEvent(Event{Kind: vmi.EventError, Tenant: ten, TID: tid, VM: name, Subject: "vm/" + name,
						Detail: hidePaths(fmt.Sprintf("kernel image (the comparison is off): %v", err), rec)})
				}
			}
			vmi.Watch(ctx, vmi.WatchConfig{Memory: memory, Interval: interval, Indicators: ind, Open: open, Own: own,
				Traffic: a.traffic.get(id, vmIP), Image: image}, func(kind string, v any) {
				e := Event{Kind: kind, Tenant: ten, TID: tid, VM: name, Subject: "vm/" + name}
				switch v := v.(type) {
				case *vmi.Report:
					e.Data, _ = json.Marshal(v)
					e.Detail = fmt.Sprintf("%d processes, %d hidden; %d modules, %d hidden; %d files, %d sockets, %d can be hidden; %d integrity findings; %.0f ms",
						len(v.Processes), len(v.HiddenProcesses), len(v.Modules), len(v.HiddenModules), len(v.Files), len(v.Sockets), len(v.HiddenSockets), findings(v), v.TookMS)
				case linuxkern.Candidate, linuxkern.ModuleCandidate, linuxkern.Finding, vmi.HiddenSocket, vmi.UnownedTraffic:
					b, _ := json.Marshal(v)
					e.Detail = string(b)
				case string:
					e.Detail = hidePaths(v, rec)
				}
				a.onEvent(e)
			})
		})}
	}
}

// loadKernelImage reads a guest's kernel image beneath the host roots.
func loadKernelImage(host hostpath.Host, name string) (*linuxkern.Image, error) {
	f, err := host.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, linuxkern.MaxVmlinux+1))
	if err != nil {
		return nil, err
	}
	return linuxkern.LoadImage(b)
}

// findings counts a report's integrity findings (none when not checked).
func findings(r *vmi.Report) int {
	if r.Integrity == nil {
		return 0
	}
	return len(r.Integrity.Findings)
}

// stopVMILocked stops every memory monitor.
func (a *Agent) stopVMILocked() { stopAll(a.vmis) }
