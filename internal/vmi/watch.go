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
}

// Event kinds Watch emits, with the type of their value.
const (
	EventReport        = "vmi.report"         // *Report, every cycle
	EventHiddenProcess = "vmi.hidden_process" // linuxkern.Candidate, once per newly hidden task
	EventHiddenModule  = "vmi.hidden_module"  // linuxkern.ModuleCandidate, once per newly hidden module
	EventKernelHook    = "vmi.kernel_hook"    // linuxkern.Finding, once per new integrity finding
	EventHiddenSocket  = "vmi.hidden_socket"  // HiddenSocket, once per socket a newly found hook can hide
	EventError         = "vmi.error"          // string, when a cycle fails (once per distinct error)
)

// Watch inspects the guest every interval until ctx ends. The RAM file is
// reopened when it appears, disappears or is replaced (the VM restarted).
func Watch(ctx context.Context, cfg WatchConfig, emit func(kind string, v any)) {
	w := watcher{cfg: cfg, emit: emit, seenProc: map[string]bool{}, seenMod: map[string]bool{}, seenHook: map[string]bool{}, seenSock: map[string]bool{}}
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
}

// alarmNew raises an alarm for each hidden object not seen in the previous
// cycle and returns the set seen in this one: one alarm per object, not one
// per cycle, and again if it disappears and comes back.
func alarmNew[T any](hidden []T, before map[string]bool, key func(T) string, alarm func(T)) map[string]bool {
	seen := map[string]bool{}
	for _, c := range hidden {
		k := key(c)
		seen[k] = true
		if !before[k] {
			alarm(c)
		}
	}
	return seen
}
