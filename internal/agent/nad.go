package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"secaas/internal/capture"
	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/lstm"
	"secaas/internal/nad"
	"secaas/internal/tenant"
)

// monitor is the anomaly detection of one VM: an OVS mirror of its port to
// a veth, AF_PACKET capture on the veth's peer, features, a detector.
type monitor struct {
	key    string // what it was started for; a change restarts it
	mirror string // OVS mirror name
	out    string // mirror output port (veth on the bridge); peer = out+"p"
	cancel context.CancelFunc
	done   chan struct{}
}

// Alert is the detail of a "nad.alert" event.
type Alert struct {
	VM          string                `json:"vm"`
	IP          string                `json:"ip"`
	Detector    string                `json:"detector"`
	WindowStart time.Time             `json:"window_start"`
	Window      string                `json:"window"`
	Packets     int                   `json:"packets"`
	Deviation   float64               `json:"deviation"`
	Threshold   float64               `json:"threshold"`
	Top         []detect.Contribution `json:"top"`
}

// syncMonitorsLocked starts the monitors the desired state asks for and
// stops the others. Errors are reported as events: anomaly detection must
// not block access control.
func (a *Agent) syncMonitorsLocked(ctx context.Context) {
	if a.monitors == nil {
		a.monitors = map[string]*monitor{}
	}
	want := map[string]*tenant.RVM{}
	for _, d := range a.net.Domains {
		for _, vm := range d.VMs {
			if _, attached := a.ports[vm.Port]; vm.NAD != nil && attached && a.isHere(vm.Port) {
				want[vm.Port] = vm
			}
		}
	}
	for port, m := range a.monitors {
		if vm, ok := want[port]; !ok || monitorKey(vm, a.ports[port]) != m.key {
			a.stopMonitor(ctx, m)
			delete(a.monitors, port)
		}
	}
	for port, vm := range want {
		if _, ok := a.monitors[port]; ok {
			continue
		}
		m, err := a.startMonitor(vm)
		if err != nil {
			a.log.Error("nad monitor failed to start", "vm", vm.Name, "err", err)
			a.onEvent(Event{Kind: "nad.error", Tenant: vm.Subnet.Domain.Tenant, Subject: "vm/" + vm.Name, Detail: err.Error()})
			continue
		}
		a.monitors[port] = m
	}
}

func monitorKey(vm *tenant.RVM, ofport uint32) string {
	b, _ := json.Marshal(struct {
		P   *tenant.NADPolicy
		IP  string
		Num uint32
	}{vm.NAD, vm.Addr.String(), ofport})
	return string(b)
}

func (a *Agent) startMonitor(vm *tenant.RVM) (*monitor, error) {
	ctx := context.Background()
	window, history, detName, err := vm.NAD.Params()
	if err != nil {
		return nil, err
	}
	no := a.ports[vm.Port]
	m := &monitor{key: monitorKey(vm, no), mirror: "secaas-nad-" + vm.Port, out: fmt.Sprintf("nm%d", no), done: make(chan struct{})}
	peer := m.out + "p"
	run := func(args ...string) error { return runCmd(ctx, args...) }
	run("ip", "link", "del", m.out)
	if err := run("ip", "link", "add", m.out, "type", "veth", "peer", "name", peer); err != nil {
		return nil, err
	}
	run("ip", "link", "set", m.out, "up")
	run("ip", "link", "set", peer, "up")
	if err := a.br.AddPort(ctx, m.out, 0); err != nil {
		run("ip", "link", "del", m.out)
		return nil, err
	}
	if err := a.br.AddMirror(ctx, m.mirror, vm.Port, m.out); err != nil {
		a.br.DelPort(ctx, m.out)
		run("ip", "link", "del", m.out)
		return nil, err
	}
	live, err := capture.OpenLive(peer)
	if err != nil {
		a.stopMonitor(ctx, m)
		return nil, err
	}
	if err := detect.CheckPolicy(detName, vm.NAD.Model != ""); err != nil {
		a.stopMonitor(ctx, m)
		live.Close()
		return nil, err
	}
	params := detect.Params{History: history, Window: window}
	if vm.NAD.Model != "" {
		mod, err := a.loadModel(vm.NAD.Model)
		if err != nil {
			a.stopMonitor(ctx, m)
			live.Close()
			return nil, err
		}
		params.Models = []*lstm.Model{mod}
	}
	tenantID, name, ip := vm.Subnet.Domain.Tenant, vm.Name, vm.Addr
	answers := a.traffic.get(vmID(vm.Subnet.Domain.TID, vm.Name), vm.Addr.String())
	var mu sync.Mutex // guards ext: packets and the clock both drive it
	ext, err := nad.NewMonitor(ip, feature.Config{Window: window}, []string{detName}, params, func(res nad.Result) {
		w := &res.Window
		v := res.Verdicts[detName]
		if !v.Anomaly {
			return
		}
		al := Alert{VM: name, IP: ip.String(), Detector: detName, WindowStart: time.Unix(0, w.Start).UTC(), Window: window.String(),
			Packets: w.Packets, Deviation: v.Deviation, Threshold: v.Threshold, Top: v.Top}
		b, _ := json.Marshal(al)
		a.onEvent(Event{Kind: "nad.alert", Tenant: tenantID, Subject: "vm/" + name, Detail: string(b)})
	})
	if err != nil {
		a.stopMonitor(ctx, m)
		live.Close()
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the clock: close quiet windows on time
			defer wg.Done()
			t := time.NewTicker(max(window/4, 50*time.Millisecond))
			defer t.Stop()
			for {
				select {
				case <-mctx.Done():
					live.Close()
					return
				case now := <-t.C:
					mu.Lock()
					ext.Tick(now.UnixNano())
					mu.Unlock()
				}
			}
		}()
		var meta capture.Meta
		for {
			p, err := live.Next()
			if err != nil {
				break // closed, or the interface went away
			}
			if capture.Decode(p.LinkType, p.Data, &meta) == nil {
				mu.Lock()
				ext.Add(p.Time, &meta)
				mu.Unlock()
				answers.Observe(p.Time, &meta)
			}
		}
		cancel()
		wg.Wait()
	}()
	a.log.Info("nad monitor started", "vm", name, "ip", ip, "window", window, "history", history, "detector", detName)
	a.onEvent(Event{Kind: "nad.started", Tenant: tenantID, Subject: "vm/" + name,
		Detail: fmt.Sprintf("window %s, history %d, detector %s, mirror %s", window, history, detName, m.out)})
	return m, nil
}

// loadModel reads a trained model from the node's model directory; name
// was checked to be a plain file name (tenant.NADPolicy).
func (a *Agent) loadModel(name string) (*lstm.Model, error) {
	if a.ModelDir == "" {
		return nil, fmt.Errorf("nad model %s: this node has no model directory (secaasd --nad-models)", name)
	}
	if filepath.Base(name) != name || name == "." || name == ".." {
		return nil, fmt.Errorf("nad model %q is not a file name", name)
	}
	m, err := lstm.LoadFile(filepath.Join(a.ModelDir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("nad model %s is not in this node's model directory", name)
		}
		if errors.Is(err, lstm.ErrCorrupt) {
			return nil, fmt.Errorf("nad model %s: %w", name, lstm.ErrCorrupt)
		}
		return nil, fmt.Errorf("nad model %s cannot be read", name)
	}
	return m, nil
}

func (a *Agent) stopMonitor(ctx context.Context, m *monitor) {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
	a.br.DelMirror(ctx, m.mirror)
	a.br.DelPort(ctx, m.out)
	runCmd(ctx, "ip", "link", "del", m.out)
}

// Close stops every monitor, of traffic and of memory (the flows stay:
// fail-secure needs no agent).
func (a *Agent) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for port, m := range a.monitors {
		a.stopMonitor(context.Background(), m)
		delete(a.monitors, port)
	}
	a.stopVMILocked()
	a.stopAVLocked()
	a.stopKMonLocked()
}
