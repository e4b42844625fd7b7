package kmon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"secaas/internal/elfreloc"
	"secaas/internal/gdbstub"
)

// Target is a guest reached through its gdbstub, with the guest kernel's
// symbols.
type Target struct {
	GDB  *gdbstub.Client
	Syms elfreloc.Symbols
	// Entry is where a vCPU is caught in process context (default: the
	// guest's x64_sys_call, on every syscall's path).
	Entry uint64
	// sentinel is the return address of calls: an int3 of padding the
	// stub breaks on (never executed by the guest itself).
	sentinel uint64
}

// maxArgs: the System V registers for integer arguments.
var argRegs = []string{"rdi", "rsi", "rdx", "rcx", "r8", "r9"}

func (t *Target) sym(name string) (uint64, error) {
	v, ok := t.Syms[name]
	if !ok {
		return 0, fmt.Errorf("the guest kernel has no %s", name)
	}
	return v, nil
}

// findSentinel picks an int3 of the padding after do_syscall_64 (a run
// of at least two 0xcc after a ret), which the guest never executes.
func (t *Target) findSentinel() error {
	if t.sentinel != 0 {
		return nil
	}
	at, err := t.sym("do_syscall_64")
	if err != nil {
		return err
	}
	code, err := t.GDB.ReadMemory(at, 4096)
	if err != nil {
		return err
	}
	i := bytes.Index(code, []byte{0xc3, 0xcc, 0xcc})
	if i < 0 {
		return errors.New("no int3 padding after do_syscall_64's ret")
	}
	t.sentinel = at + uint64(i) + 2
	return nil
}

// Catch resumes the guest until a vCPU reaches Entry (the guest must be
// making syscalls) and leaves it stopped there, that vCPU selected.
func (t *Target) Catch(ctx context.Context) error {
	if t.Entry == 0 {
		var err error
		if t.Entry, err = t.sym("x64_sys_call"); err != nil {
			return err
		}
	}
	if err := t.findSentinel(); err != nil {
		return err
	}
	if err := t.GDB.SetPoint(gdbstub.Hardware, t.Entry, 1); err != nil {
		return err
	}
	defer t.GDB.ClearPoint(gdbstub.Hardware, t.Entry, 1)
	for {
		stop, err := t.GDB.Continue(ctx)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no vCPU reached the syscall path: %w", ctx.Err())
		}
		if stop.Exited {
			return errors.New("the guest is gone")
		}
		if stop.Thread != "" {
			if err := t.GDB.SelectThread(stop.Thread); err != nil {
				return err
			}
		}
		regs, err := t.GDB.ReadRegisters()
		if err != nil {
			return err
		}
		if rip, _ := regs.Get("rip"); rip == t.Entry {
			return nil
		}
	}
}

// Call makes the caught vCPU call fn(args...) in the guest kernel and
// returns its rax. The vCPU gets a fresh frame below its stack pointer
// whose return address is the sentinel; the guest runs (the callee may
// sleep and its task move to another vCPU) until a vCPU stops at the
// sentinel with that frame's stack pointer; then that vCPU's registers
// are put back as they were when caught. Call needs Catch first.
func (t *Target) Call(ctx context.Context, fn uint64, args ...uint64) (uint64, error) {
	if len(args) > len(argRegs) {
		return 0, fmt.Errorf("at most %d arguments", len(argRegs))
	}
	saved, err := t.GDB.ReadRegisters()
	if err != nil {
		return 0, err
	}
	rsp, ok := saved.Get("rsp")
	if !ok {
		return 0, errors.New("no rsp in the target description")
	}
	// Below the caller's frame (red zones do not exist in the kernel), 16-
	// byte aligned plus the return address, as at any function's entry.
	frame := ((rsp - 1024) &^ 0xf) - 8
	ret := make([]byte, 8)
	binary.LittleEndian.PutUint64(ret, t.sentinel)
	if err := t.GDB.WriteMemory(frame, ret); err != nil {
		return 0, err
	}
	regs := saved.Clone()
	for i, a := range args {
		if err := regs.Set(argRegs[i], a); err != nil {
			return 0, err
		}
	}
	regs.Set("rsp", frame)
	regs.Set("rip", fn)
	regs.Set("rax", 0)
	if err := t.GDB.WriteRegisters(regs); err != nil {
		return 0, err
	}
	if err := t.GDB.SetPoint(gdbstub.Software, t.sentinel, 1); err != nil {
		return 0, err
	}
	defer t.GDB.ClearPoint(gdbstub.Software, t.sentinel, 1)
	for {
		stop, err := t.GDB.Continue(ctx)
		if err != nil {
			return 0, err
		}
		if stop.Exited {
			return 0, errors.New("the guest is gone")
		}
		if stop.Thread != "" {
			if err := t.GDB.SelectThread(stop.Thread); err != nil {
				return 0, err
			}
		}
		now, err := t.GDB.ReadRegisters()
		if err != nil {
			return 0, err
		}
		rip, _ := now.Get("rip")
		sp, _ := now.Get("rsp")
		if rip == t.sentinel && sp == frame+8 {
			rax, _ := now.Get("rax")
			return rax, t.GDB.WriteRegisters(saved)
		}
		if ctx.Err() != nil {
			// The call has not returned: the task is somewhere in it.
			// Nothing safe can be put back.
			return 0, fmt.Errorf("the guest call of %#x did not return: %w", fn, ctx.Err())
		}
	}
}

// Injected is an object placed in the guest kernel.
type Injected struct {
	Image *elfreloc.Image
	// Pages is how many pages module_alloc gave.
	Pages int
}

// Inject allocates module memory for obj in the guest, relocates obj
// there against the guest's symbols, writes it, and makes it executable
// (it stays writable). The caught vCPU is used for the calls. Nothing
// appears in the guest's module list.
func (t *Target) Inject(ctx context.Context, obj []byte) (*Injected, error) {
	// Lay out once at a provisional base to learn the size.
	probe, err := elfreloc.Relocate(obj, 0xffffffffc0000000, t.Syms)
	if err != nil {
		return nil, err
	}
	pages := int((probe.Size + 4095) / 4096)
	// module_alloc(size) until Linux 6.10; execmem_alloc(EXECMEM_DEFAULT,
	// size) since.
	var base uint64
	if alloc, err := t.sym("module_alloc"); err == nil {
		base, err = t.Call(ctx, alloc, uint64(pages)*4096)
		if err != nil {
			return nil, err
		}
	} else if alloc, err2 := t.sym("execmem_alloc"); err2 == nil {
		base, err = t.Call(ctx, alloc, 0, uint64(pages)*4096)
		if err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("the guest has neither module_alloc nor execmem_alloc: %w", err)
	}
	if base == 0 || base&0xfff != 0 {
		return nil, fmt.Errorf("allocating %d bytes of module memory gave %#x", pages*4096, base)
	}
	im, err := elfreloc.Relocate(obj, base, t.Syms)
	if err != nil {
		return nil, err
	}
	for _, s := range im.Sections {
		if err := t.GDB.WriteMemory(s.Addr, s.Data); err != nil {
			return nil, err
		}
	}
	setX, err := t.sym("set_memory_x")
	if err != nil {
		return nil, err
	}
	if r, err := t.Call(ctx, setX, base, uint64(pages)); err != nil || int32(r) != 0 {
		return nil, fmt.Errorf("set_memory_x(%#x, %d) = %d: %v", base, pages, int32(r), err)
	}
	return &Injected{Image: im, Pages: pages}, nil
}

// Remove frees an injected object's memory (not executable first, as
// the kernel's own module unloading does).
func (t *Target) Remove(ctx context.Context, inj *Injected) error {
	nx, err := t.sym("set_memory_nx")
	if err != nil {
		return err
	}
	free, err := t.sym("module_memfree")
	if err != nil {
		if free, err = t.sym("execmem_free"); err != nil { // Linux 6.10 and later
			return err
		}
	}
	if r, err := t.Call(ctx, nx, inj.Image.Base, uint64(inj.Pages)); err != nil || int32(r) != 0 {
		return fmt.Errorf("set_memory_nx(%#x) = %d: %v", inj.Image.Base, int32(r), err)
	}
	_, err = t.Call(ctx, free, inj.Image.Base)
	return err
}
