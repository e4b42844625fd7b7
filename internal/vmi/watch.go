package vmi

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/linuxkern"
)

// WatchConfig is one VM's monitoring.
type WatchConfig struct {
	Memory     string // the guest's RAM file (shared memory-backend-file)
	Interval   time.Duration
	Indicators map[string]bool
	// Open opens the RAM file read-only (default os.Open); the daemon
	// opens it beneath its host roots (package hostpath).
	Open func(name string) (*os.File, error)
	// Own is what secaas injected into the guest's kernel (Session.Own).
	Own func() []linuxkern.Region
	// Image is the guest's own kernel image (Session.Image).
	Image *linuxkern.Image
	// Traffic, when the VM's traffic is mirrored (anomaly detection
	// runs), says which of its ports answer: each socket listing is
	// cross-viewed with it once the traffic around it is in (CrossView).
	Traffic *Responses
}

// Event kinds Watch emits, with the type of their value.
const (
	EventReport        = "vmi.report"          // *Report, every cycle
	EventHiddenProcess = "vmi.hidden_process"  // linuxkern.Candidate, once per newly hidden task
	EventHiddenModule  = "vmi.hidden_module"   // linuxkern.ModuleCandidate, once per newly hidden module
	EventKernelHook    = "vmi.kernel_hook"     // linuxkern.Finding, once per new integrity finding
	EventHiddenSocket  = "vmi.hidden_socket"   // HiddenSocket, once per socket a newly found hook can hide
	EventUnowned       = "vmi.unowned_traffic" // UnownedTraffic, once per port answering with no socket to own it
	EventError         = "vmi.error"           // string, when a cycle fails (once per distinct error)
)

// Watch inspects the guest every interval until ctx ends. The RAM file is
// reopened when it appears, disappears or is replaced (the VM restarted).
func Watch(ctx context.Context, cfg WatchConfig, emit func(kind string, v any)) {
	w := watcher{cfg: cfg, emit: emit, seenProc: map[string]bool{}, seenMod: map[string]bool{}, seenHook: map[string]bool{}, seenSock: map[string]bool{},
		seenFlow: map[string]bool{}}
	defer w.close()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		w.cycle()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type watcher struct {
	cfg      WatchConfig
	emit     func(string, any)
	mem      *guestmem.Mem
	ino      uint64
	sess     *Session
	lastErr  string
	seenProc map[string]bool // hidden tasks already alerted, by pid and address
	seenMod  map[string]bool
	seenHook map[string]bool
	seenSock map[string]bool
	seenFlow map[string]bool
	listings []listing // socket listings waiting for the traffic after them
}

// listing is one cycle's sockets, for the cross-view with traffic.
type listing struct {
	at    time.Time
	socks []linuxkern.Socket
}

// crossViewWindow is how much traffic around a listing the cross-view
// wants on each side: a service must answer before and after it.
func (w *watcher) crossViewWindow() time.Duration { return max(w.cfg.Interval, 5*time.Second) }

// crossView compares the listings whose traffic after them is in with
// the ports seen answering, and alarms once per unowned port.
func (w *watcher) crossView(r *Report) {
	if w.cfg.Traffic == nil || !w.cfg.Indicators[Sockets] {
		return
	}
	if r.listingWhole { // a listing that missed a process could miss its socket (a partial integrity check does not matter)
		w.listings = append(w.listings, listing{at: r.At, socks: r.Sockets})
		if len(w.listings) > 256 {
			w.listings = w.listings[1:]
		}
	}
	win := w.crossViewWindow()
	var unowned []UnownedTraffic
	judged := 0
	for len(w.listings) > 0 && time.Since(w.listings[0].at) >= win {
		l := w.listings[0]
		w.listings = w.listings[1:]
		unowned = append(unowned, CrossView(l.socks, w.cfg.Traffic.Answering(l.at, win), l.at)...)
		judged++
	}
	if judged == 0 {
		return // nothing judged this cycle: the alarms stand as they are
	}
	w.seenFlow = alarmNew(unowned, w.seenFlow, func(u UnownedTraffic) string { return fmt.Sprintf("%s|%s|%d", u.Proto, u.Addr, u.Port) },
		func(u UnownedTraffic) { w.emit(EventUnowned, u) })
}

func (w *watcher) close() {
	if w.mem != nil {
		w.mem.Close()
		w.mem, w.sess = nil, nil
	}
}

func (w *watcher) fail(err error) {
	if msg := err.Error(); msg != w.lastErr {
		w.lastErr = msg
		w.emit(EventError, msg)
	}
}

func (w *watcher) cycle() {
	open := w.cfg.Open
	if open == nil {
		open = os.Open
	}
	f, err := open(w.cfg.Memory)
	if err != nil {
		w.close()
		w.fail(fmt.Errorf("%w: %v", ErrNoMemory, err))
		return
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		w.close()
		w.fail(fmt.Errorf("%w: %v", ErrNoMemory, err))
		return
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	if w.mem != nil && ino != w.ino {
		w.close()
	}
	if w.mem == nil {
		if !st.Mode().IsRegular() {
			f.Close()
			w.fail(fmt.Errorf("%w: %s is not a regular file", ErrNoMemory, w.cfg.Memory))
			return
		}
		w.mem, err = guestmem.OpenSharedFile(f)
		if err != nil {
			f.Close()
			w.fail(fmt.Errorf("%w: %v", ErrNoMemory, err))
			return
		}
		w.ino, w.sess = ino, NewSession(w.mem)
		w.sess.Own, w.sess.Image = w.cfg.Own, w.cfg.Image
	}
	f.Close()
	r, err := w.sess.Inspect(w.cfg.Indicators)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastErr = ""
	w.emit(EventReport, r)
	w.seenProc = alarmNew(r.HiddenProcesses, w.seenProc, func(c linuxkern.Candidate) string { return fmt.Sprintf("%d@%#x", c.PID, c.PA) },
		func(c linuxkern.Candidate) { w.emit(EventHiddenProcess, c) })
	w.seenMod = alarmNew(r.HiddenModules, w.seenMod, func(c linuxkern.ModuleCandidate) string { return fmt.Sprintf("%s@%#x", c.Name, c.Addr) },
		func(c linuxkern.ModuleCandidate) { w.emit(EventHiddenModule, c) })
	if r.Integrity != nil {
		var hooks []linuxkern.Finding // hidden modules have their own event
		for _, f := range r.Integrity.Findings {
			if f.Kind != "hidden_module" {
				hooks = append(hooks, f)
			}
		}
		w.seenHook = alarmNew(hooks, w.seenHook, linuxkern.Finding.Key, func(f linuxkern.Finding) { w.emit(EventKernelHook, f) })
	}
	w.seenSock = alarmNew(r.HiddenSockets, w.seenSock, func(h HiddenSocket) string { return fmt.Sprintf("%#x|%s", h.Sock, h.Hook.Key()) },
		func(h HiddenSocket) { w.emit(EventHiddenSocket, h) })
	w.crossView(r)
}

// alarmNew raises an alarm for each hidden object not seen in the previous
// cycle and returns the set seen in this one: one alarm per object, not one
// per cycle, and again if it disappears and comes back.
func alarmNew[T any](hidden []T, before map[string]bool, key func(T) string, alarm func(T)) map[string]bool {
	seen := map[string]bool{}
	for _, c := range hidden {
		k := key(c)
		if !before[k] && !seen[k] { // once, even if listed twice
			alarm(c)
		}
		seen[k] = true
	}
	return seen
}
