package kmon

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"secaas/internal/elfreloc"
	"secaas/internal/gdbstub"
	"secaas/internal/linuxkern"
)

// Source is the monitor object's C source (object/monitor.c); Build
// compiles it.
//
//go:embed object/monitor.c
var Source []byte

// Build compiles the monitor object with gcc for the guest kernel's code
// model (elfreloc.KernelCFlags) into out.
func Build(ctx context.Context, out string) error {
	dir, err := os.MkdirTemp("", "secaas-kmon-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "monitor.c")
	if err := os.WriteFile(src, Source, 0o600); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "gcc", append(elfreloc.KernelCFlags, "-o", out, src)...).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc: %w: %s", err, b)
	}
	return nil
}

// Symbols are a guest kernel's symbols (kallsyms, read from its memory)
// for the relocation, the first of each name.
func Symbols(k *linuxkern.Kernel) elfreloc.Symbols {
	syms := elfreloc.Symbols{}
	for _, s := range k.Syms.Syms {
		if _, seen := syms[s.Name]; !seen {
			syms[s.Name] = s.Addr
		}
	}
	return syms
}

// Layout reads the task layout the monitor needs from the guest's BTF.
func Layout(k *linuxkern.Kernel) (TaskOffsets, error) {
	var lay TaskOffsets
	for _, f := range []struct {
		dst  *uint32
		path []string
	}{{&lay.Pid, []string{"task_struct", "pid"}}, {&lay.Comm, []string{"task_struct", "comm"}},
		{&lay.Cred, []string{"task_struct", "cred"}}, {&lay.UID, []string{"cred", "uid"}}} {
		o, err := k.Offset(f.path...)
		if err != nil {
			return lay, err
		}
		*f.dst = o
	}
	// The current task: the per-CPU current_task until Linux 6.1,
	// pcpu_hot.current_task since 6.2.
	syms := Symbols(k)
	if c := syms["current_task"]; c != 0 {
		lay.Current = c
	} else if hot := syms["pcpu_hot"]; hot != 0 {
		o, err := k.Offset("pcpu_hot", "current_task")
		if err != nil {
			return lay, err
		}
		lay.Current = hot + uint64(o)
	} else {
		return lay, errors.New("the guest has neither current_task nor pcpu_hot")
	}
	return lay, nil
}

// ReadVA reads n bytes of guest kernel virtual memory from the guest's
// RAM, through its page tables, page by page.
func ReadVA(k *linuxkern.Kernel, va uint64, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		at := va + uint64(len(out))
		k0 := min(n-len(out), int(4096-at%4096))
		pa, err := k.PA(at)
		if err != nil {
			return nil, err
		}
		b := make([]byte, k0)
		if _, err := k.Mem.ReadAt(b, pa); err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// Session is the syscall monitor of one running guest: injected and
// hooked by Start, its policies changed by SetPolicies, its events read
// from the guest's RAM by Poll (no stop of the guest), and taken out by
// Stop, which leaves the guest as it was.
type Session struct {
	k      *linuxkern.Kernel
	attach func(context.Context) (*gdbstub.Client, error)
	syms   elfreloc.Symbols
	mon    *Monitor
	next   uint64
	// Took is how long the injection took (attach, catch, inject, hook).
	Took time.Duration
}

// Start injects the monitor object obj into the guest whose kernel (read
// from its RAM) is k, through the gdbstub connection attach makes, with
// policies ps. The guest must be making syscalls (a vCPU is caught on
// the syscall path to make the calls). The guest runs on when Start
// returns, whatever happened.
func Start(ctx context.Context, k *linuxkern.Kernel, attach func(context.Context) (*gdbstub.Client, error), obj []byte, ps []Policy) (*Session, error) {
	if _, _, err := EncodePolicies(ps); err != nil {
		return nil, err
	}
	lay, err := Layout(k)
	if err != nil {
		return nil, fmt.Errorf("the guest's task layout: %w", err)
	}
	s := &Session{k: k, attach: attach, syms: Symbols(k)}
	t0 := time.Now()
	c, err := attach(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Detach()
	tg := &Target{GDB: c, Syms: s.syms}
	if err := tg.Catch(ctx); err != nil {
		return nil, err
	}
	if s.mon, err = tg.Install(ctx, obj, lay); err != nil {
		return nil, err
	}
	if err := s.mon.SetPolicies(c, ps); err != nil {
		tg.Unhook(s.mon.Hook)
		return nil, err
	}
	// The syscall entry MSR as it is now, for the checks.
	if read := s.mon.Injected.Image.Symbols["secaas_read_lstar"]; read != 0 {
		if _, err := tg.Call(ctx, read); err != nil {
			tg.Unhook(s.mon.Hook)
			return nil, fmt.Errorf("reading the syscall entry MSR: %w", err)
		}
	}
	s.Took = time.Since(t0)
	return s, nil
}

// SetPolicies replaces the guest's policies (the guest stops for the
// write, so the change is whole when it runs on).
func (s *Session) SetPolicies(ctx context.Context, ps []Policy) error {
	c, err := s.attach(ctx)
	if err != nil {
		return err
	}
	defer c.Detach()
	return s.mon.SetPolicies(c, ps)
}

// Poll returns the events recorded since the last Poll, and how many the
// ring overwrote before they were read.
func (s *Session) Poll() ([]Event, int, error) {
	area, err := ReadVA(s.k, s.mon.Shared, sharedSize)
	if err != nil {
		return nil, 0, err
	}
	evs, next, lost, err := DecodeEvents(area, s.next)
	if err != nil {
		return nil, 0, err
	}
	s.next = next
	return evs, lost, nil
}

// HookSite is the address of the hooked call in do_syscall_64.
func (s *Session) HookSite() uint64 { return s.mon.Hook.Site }

// Region is the guest kernel memory the monitor occupies (its code and
// data), for memory monitoring to tell secaas's own hook from a rootkit's.
func (s *Session) Region() linuxkern.Region {
	return linuxkern.Region{Name: "secaas kmon", Base: s.mon.Injected.Image.Base, Size: uint64(s.mon.Injected.Pages) * 4096}
}

func (s *Session) word(off uint64) (uint64, error) {
	b, err := ReadVA(s.k, s.mon.Shared+off, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// Stop unhooks the dispatch, waits (up to wait) until no task is in the
// monitor's check (the syscall itself is a tail call: a task blocked in
// it holds no frame of the monitor), waits for every task to pass a
// voluntary context switch (synchronize_rcu_tasks, as the kernel does
// before freeing a trampoline), and frees the monitor's memory. If a
// task stays in the check, or the kernel has no tasks RCU, the memory is
// left (executable, unreachable from the dispatch) rather than freed
// under a task, and Stop says so.
func (s *Session) Stop(ctx context.Context, wait time.Duration) error {
	c, err := s.attach(ctx)
	if err != nil {
		return err
	}
	tg := &Target{GDB: c, Syms: s.syms}
	err = tg.Unhook(s.mon.Hook)
	c.Detach()
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		n, err := s.word(offInFlight)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("unhooked, but %d tasks are still inside the monitor after %s: its memory stays allocated", n, wait)
		}
	}
	if c, err = s.attach(ctx); err != nil {
		return err
	}
	defer c.Detach()
	tg = &Target{GDB: c, Syms: s.syms}
	if err := tg.Catch(ctx); err != nil {
		return errors.Join(errors.New("unhooked; freeing the monitor's memory"), err)
	}
	quiesce := s.syms["synchronize_rcu_tasks"]
	if quiesce == 0 {
		return errors.New("unhooked; the guest kernel has no tasks RCU (synchronize_rcu_tasks) to know that no task is in the monitor: its memory stays allocated")
	}
	if _, err := tg.Call(ctx, quiesce); err != nil {
		return fmt.Errorf("unhooked; waiting for the guest's tasks: %w", err)
	}
	return tg.Remove(ctx, s.mon.Injected)
}
