package vmi

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"secaas/internal/guestmem"
)

// WatchConfig is one VM's monitoring.
type WatchConfig struct {
	Memory     string // the guest's RAM file (shared memory-backend-file)
	Interval   time.Duration
	Indicators map[string]bool
}

// Event kinds Watch emits, with the type of their value.
const (
	EventReport        = "vmi.report"         // *Report, every cycle
	EventHiddenProcess = "vmi.hidden_process" // linuxkern.Candidate, once per newly hidden task
	EventHiddenModule  = "vmi.hidden_module"  // linuxkern.ModuleCandidate, once per newly hidden module
	EventError         = "vmi.error"          // string, when a cycle fails (once per distinct error)
)

// Watch inspects the guest every interval until ctx ends. The RAM file is
// reopened when it appears, disappears or is replaced (the VM restarted).
func Watch(ctx context.Context, cfg WatchConfig, emit func(kind string, v any)) {
	w := watcher{cfg: cfg, emit: emit, seenProc: map[string]bool{}, seenMod: map[string]bool{}}
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
	st, err := os.Stat(w.cfg.Memory)
	if err != nil {
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
		if w.mem, err = guestmem.OpenShared(w.cfg.Memory); err != nil {
			w.fail(fmt.Errorf("%w: %v", ErrNoMemory, err))
			return
		}
		w.ino, w.sess = ino, NewSession(w.mem)
	}
	r, err := w.sess.Inspect(w.cfg.Indicators)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastErr = ""
	w.emit(EventReport, r)
	seen := map[string]bool{}
	for _, c := range r.HiddenProcesses {
		key := fmt.Sprintf("%d@%#x", c.PID, c.PA)
		seen[key] = true
		if !w.seenProc[key] {
			w.emit(EventHiddenProcess, c)
		}
	}
	w.seenProc = seen
	seenM := map[string]bool{}
	for _, c := range r.HiddenModules {
		key := fmt.Sprintf("%s@%#x", c.Name, c.Addr)
		seenM[key] = true
		if !w.seenMod[key] {
			w.emit(EventHiddenModule, c)
		}
	}
	w.seenMod = seenM
}
