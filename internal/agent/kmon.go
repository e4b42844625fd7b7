package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"secaas/internal/gdbstub"
	"secaas/internal/guestmem"
	"secaas/internal/inventory"
	"secaas/internal/kmon"
	"secaas/internal/linuxkern"
	"secaas/internal/tenant"
)

// kmonWatch is the syscall monitoring of one VM: the monitor injected
// into its kernel, whose rules change in place.
type kmonWatch struct {
	*worker
	host  string             // the port's host record (JSON): a change re-injects
	rules string             // the rules last handed over (JSON)
	next  chan []kmon.Policy // the newest rules, for the running session
}

func (w *kmonWatch) base() *worker { return w.worker }

// kmonGates serialise, per VM, a monitor's removal and the next
// injection: a VM's gdbstub takes one client, and a new monitor may only
// hook the dispatch the old one gave back.
type kmonGates struct {
	mu    sync.Mutex
	gates map[string]*sync.Mutex
	wg    sync.WaitGroup // removals under way
	// own is what each VM's monitor occupies in its kernel, while it is
	// there: memory monitoring names it as secaas's, not a rootkit's.
	own map[string]linuxkern.Region
}

// setOwn records (or, with a zero region, forgets) a VM's injected monitor.
func (g *kmonGates) setOwn(id string, r linuxkern.Region) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.own == nil {
		g.own = map[string]linuxkern.Region{}
	}
	if r.Size == 0 {
		delete(g.own, id)
		return
	}
	g.own[id] = r
}

// owned is what secaas injected into a VM's kernel.
func (g *kmonGates) owned(id string) []linuxkern.Region {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.own[id]; ok {
		return []linuxkern.Region{r}
	}
	return nil
}

func (g *kmonGates) gate(id string) *sync.Mutex {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gates == nil {
		g.gates = map[string]*sync.Mutex{}
	}
	if g.gates[id] == nil {
		g.gates[id] = &sync.Mutex{}
	}
	return g.gates[id]
}

// kmonPolicies are a policy's rules as the monitor takes them.
func kmonPolicies(p *tenant.KMonPolicy) []kmon.Policy {
	var out []kmon.Policy
	for _, r := range p.Rules {
		out = append(out, kmon.Policy{Syscalls: r.Syscalls, Subject: r.Subject, Object: r.Object, Action: r.Action})
	}
	return out
}

// kmonPoll is how often a monitor's event ring is read.
const kmonPoll = 500 * time.Millisecond

// syncKMonLocked starts the syscall monitors the desired state asks for,
// hands changed rules to running ones (a write into the guest, no
// re-injection), and stops the others. Stopping returns at once: the
// monitor's removal goes on in the background, and the VM's next
// monitor waits for it.
func (a *Agent) syncKMonLocked() {
	if a.kmons == nil {
		a.kmons = map[string]*kmonWatch{}
	}
	wants := a.wantedPolicies(func(vm *tenant.VM) any {
		if vm.KMon == nil {
			return nil
		}
		return vm.KMon
	})
	for id, w := range a.kmons {
		want, ok := wants[id]
		if !ok || recordKey(want.Host) != w.host {
			w.stop()
			delete(a.kmons, id)
		}
	}
	for id, want := range wants {
		rules := kmonPolicies(want.VM.KMon)
		b, _ := json.Marshal(rules)
		if w, ok := a.kmons[id]; ok {
			if string(b) != w.rules {
				select { // only the newest rules matter
				case <-w.next:
				default:
				}
				w.next <- rules
				w.rules = string(b)
			}
			continue
		}
		w := &kmonWatch{host: recordKey(want.Host), rules: string(b), next: make(chan []kmon.Policy, 1)}
		w.worker = startWorker(want.Key, func(ctx context.Context) { a.runKMon(ctx, id, want, rules, w.next) })
		a.kmons[id] = w
	}
}

func recordKey(p inventory.Port) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// kmonRetry is how long a failed injection waits before the next try.
const kmonRetry = 30 * time.Second

// runKMon injects the monitor into one VM (trying again every kmonRetry
// while it fails), reports its events and repairs tampering with its hook
// and code (kmon.tampered) until ctx ends, and then has it removed.
func (a *Agent) runKMon(ctx context.Context, id string, want vmPolicy, rules []kmon.Policy, next <-chan []kmon.Policy) {
	tid, ten, name := want.TID, want.Tenant, want.VM.Name
	emit := func(kind, detail string) {
		a.onEvent(Event{Kind: kind, Tenant: ten, TID: tid, VM: name, Subject: "vm/" + name, Detail: hidePaths(detail, want.Host)})
	}
	var why string
	switch {
	case a.Host == nil:
		why = "this node has no host roots configured"
	case want.Host.Memory == "" || want.Host.GDB == "":
		why = fmt.Sprintf("port %s needs a RAM file and a gdbstub socket in the host inventory", want.VM.Port)
	case a.KMonObject == "":
		why = "this node has no monitor object (secaasd --kmon-object)"
	}
	if why != "" {
		emit("kmon.waiting", why)
		return
	}
	// A failure that repeats (the guest makes no syscalls, or went away)
	// is said once, until something works again.
	var said string
	fail := func(err error, what string) {
		if err == nil {
			said = ""
			return
		}
		if msg := fmt.Sprintf("%s: %v", what, err); msg != said && ctx.Err() == nil {
			emit("kmon.failed", msg)
			said = msg
		}
	}
	gate := a.kgates.gate(id)
	gate.Lock()
	var s *kmon.Session
	var mem *guestmem.Mem
	for {
		var err error
		if s, mem, err = a.injectKMon(ctx, want.Host, rules); err == nil {
			break
		}
		fail(err, "injection")
		select {
		case <-ctx.Done():
			gate.Unlock()
			return
		case rules = <-next:
		case <-time.After(kmonRetry):
		}
	}
	said = ""
	a.kgates.setOwn(id, s.Region())
	emit("kmon.started", fmt.Sprintf("monitor injected and dispatch hooked at %#x in %s; rules: %d", s.HookSite(), s.Took.Round(time.Millisecond), len(rules)))
	// The removal outlives the worker (stop returns at once), holding the
	// VM's gate until the guest is given back.
	defer func() {
		a.kgates.wg.Add(1)
		go func() {
			defer a.kgates.wg.Done()
			defer gate.Unlock()
			defer mem.Close()
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.Stop(rctx, 5*time.Second); err != nil {
				emit("kmon.failed", fmt.Sprintf("removal: %v", err))
				return
			}
			a.kgates.setOwn(id, linuxkern.Region{})
			emit("kmon.stopped", "dispatch restored, monitor freed")
		}()
	}()
	t := time.NewTicker(kmonPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			a.kmonEvents(s, emit) // the last ones
			return
		case rules := <-next:
			if err := s.SetPolicies(ctx, rules); err != nil {
				fail(err, "new rules")
			} else {
				emit("kmon.rules", fmt.Sprintf("rules: %d", len(rules)))
			}
		case <-t.C:
			if err := a.kmonEvents(s, emit); err != nil {
				fail(err, "reading events")
				continue
			}
			tampers, err := s.Check(ctx)
			fail(err, "checking the hook")
			for _, tm := range tampers {
				emit("kmon.tampered", tm.String())
			}
		}
	}
}

// injectKMon opens the guest of a port's record (its RAM beneath the
// roots, its kernel read from it) and starts a monitor there through its
// gdbstub socket.
func (a *Agent) injectKMon(ctx context.Context, rec inventory.Port, rules []kmon.Policy) (*kmon.Session, *guestmem.Mem, error) {
	obj, err := os.ReadFile(a.KMonObject)
	if err != nil {
		return nil, nil, fmt.Errorf("monitor object: %w", err)
	}
	f, err := a.Host.OpenFile(rec.Memory, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, hostErr("the guest's RAM file", rec.Name, err)
	}
	mem, err := guestmem.OpenSharedFile(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("guest RAM: %w", err)
	}
	k, err := linuxkern.Open(mem, mem.Size())
	if err != nil {
		mem.Close()
		return nil, nil, fmt.Errorf("guest kernel: %w", err)
	}
	host, sock := a.Host, rec.GDB
	attach := func(ctx context.Context) (*gdbstub.Client, error) {
		conn, err := host.DialUnix(ctx, sock)
		if err != nil {
			return nil, hostErr("the guest's gdbstub socket", rec.Name, err)
		}
		return gdbstub.NewClient(conn, 10*time.Second)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s, err := kmon.Start(sctx, k, attach, obj, rules)
	if err != nil {
		mem.Close()
		return nil, nil, err
	}
	return s, mem, nil
}

// kmonEvents reports the monitor's new events: kmon.record or kmon.block.
func (a *Agent) kmonEvents(s *kmon.Session, emit func(kind, detail string)) error {
	evs, lost, err := s.Poll()
	if err != nil {
		return err
	}
	for _, e := range evs {
		emit("kmon."+e.Verdict, fmt.Sprintf("pid %d uid %d comm %s syscall %d path %s", e.PID, e.UID, e.Comm, e.Syscall, e.Path))
	}
	if lost > 0 {
		emit("kmon.lost", fmt.Sprintf("%d events overwritten before they were read", lost))
	}
	return nil
}

// stopKMonLocked stops every syscall monitor and waits for their removal.
func (a *Agent) stopKMonLocked() {
	stopAll(a.kmons)
	a.kgates.wg.Wait()
}

// hostErr says what went wrong with a host resource of a port's record
// in words a tenant may read: the resource and the system's reason, not
// the host path (events go to the tenant).
func hostErr(what, port string, err error) error {
	var errno syscall.Errno
	reason := "cannot be opened"
	if errors.As(err, &errno) {
		reason = errno.Error()
	}
	return fmt.Errorf("%s of port %s: %s", what, port, reason)
}
