package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"secaas/internal/inventory"
	"secaas/internal/tenant"
)

// worker is a per-VM background job the desired state asks for (memory
// monitoring, HyperAV): started when a policy appears, restarted when it
// changes, stopped when it goes.
type worker struct {
	key    string // the policy it runs, as JSON: a change restarts it
	cancel context.CancelFunc
	done   chan struct{}
}

// startWorker runs job in its own goroutine until stopped.
func startWorker(key string, job func(ctx context.Context)) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{key: key, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		job(ctx)
	}()
	return w
}

func (w *worker) stop() {
	w.cancel()
	<-w.done
}

// stopStale stops and forgets the running workers that wants (id -> policy
// key) no longer asks for, or asks for with another policy.
func stopStale[W interface{ base() *worker }](running map[string]W, wants map[string]string) {
	for id, w := range running {
		if key, ok := wants[id]; !ok || key != w.base().key {
			w.base().stop()
			delete(running, id)
		}
	}
}

// stopAll stops and forgets every worker.
func stopAll[W interface{ base() *worker }](running map[string]W) {
	for id, w := range running {
		w.base().stop()
		delete(running, id)
	}
}

// vmPolicy is a service policy one VM of the desired state asks for.
type vmPolicy struct {
	TID    int
	Tenant string
	VM     tenant.VM
	Host   inventory.Port // the host's record of the VM's port
	Key    string         // the policy and record as JSON: a change restarts its worker
}

// wantedPolicies collects, by "TID/VM", the VMs whose policy pick returns
// (nil: the service is off for that VM).
func (a *Agent) wantedPolicies(pick func(vm *tenant.VM) any) map[string]vmPolicy {
	wants := map[string]vmPolicy{}
	for _, d := range a.net.Domains {
		for _, vm := range d.VMs {
			p := pick(&vm.VM)
			if p == nil || !a.isHere(vm.Port) {
				continue
			}
			host := a.inv[vm.Port]
			if host.Tenant != d.Tenant || host.Uplink {
				host = inventory.Port{Name: vm.Port} // not leased to the domain's tenant: no host resources
			}
			b, _ := json.Marshal(struct {
				Policy any
				Host   inventory.Port
			}{p, host})
			wants[vmID(d.TID, vm.Name)] = vmPolicy{d.TID, d.Tenant, vm.VM, host, string(b)}
		}
	}
	return wants
}

// isHere says whether a VM port is on this host.
func (a *Agent) isHere(port string) bool { return a.here == nil || a.here[port] }

// keys is the id -> policy key map stopStale compares against.
func keys(wants map[string]vmPolicy) map[string]string {
	out := make(map[string]string, len(wants))
	for id, w := range wants {
		out[id] = w.Key
	}
	return out
}

// vmID names a VM across domains: "TID/VM".
func vmID(tid int, vm string) string { return fmt.Sprintf("%d/%s", tid, vm) }

// hidePaths replaces the host paths of a port's record in an event's
// detail: events go to the tenant, and host paths are not the tenant's.
func hidePaths(detail string, rec inventory.Port) string {
	for _, f := range rec.Paths() {
		detail = strings.ReplaceAll(detail, f[1], "<"+f[0]+" of port "+rec.Name+">")
	}
	return detail
}
