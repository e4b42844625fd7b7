package linuxkern

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf/btf"
)

// MaxBTF bounds the kernel BTF blob read from the guest.
const MaxBTF = 64 << 20

// ModuleBase is where x86-64 kernel modules are mapped (MODULES_VADDR);
// the kernel image's mapping ends there.
const ModuleBase = 0xffffffffc0000000

// Kernel is what is known about a guest kernel from its memory alone.
type Kernel struct {
	Mem        io.ReaderAt
	Info       *VMCoreInfo
	Syms       *Kallsyms
	BTF        *btf.Spec
	PageOffset uint64 // base of the direct map (randomised by KASLR)
	PhysSize   int64  // end of physical memory: the direct map covers [0, PhysSize)
	TopPGT     int64  // physical address of init_top_pgt
	Levels     int    // paging depth: 4 or 5
	Task       TaskLayout
	Pid        PidLayout
	Module     ModuleLayout
	Detail     DetailLayout
	Held       HeldLayout
	heldErr    error // why Held is unusable, if it is
}

// Open recovers a kernel from guest memory: VMCOREINFO, kallsyms, BTF,
// the direct map's base and the task_struct layout.
func Open(mem io.ReaderAt, size int64) (*Kernel, error) {
	vi, err := FindVMCoreInfo(mem, size)
	if err != nil {
		return nil, err
	}
	ks, err := ReadKallsyms(mem, vi)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Mem: mem, Info: vi, Syms: ks, PhysSize: size}
	start, ok1 := ks.Lookup("__start_BTF")
	stop, ok2 := ks.Lookup("__stop_BTF")
	if !ok1 || !ok2 || stop.Addr <= start.Addr || stop.Addr-start.Addr > MaxBTF {
		return nil, errors.New("btf: no plausible __start_BTF..__stop_BTF in kallsyms")
	}
	raw := make([]byte, stop.Addr-start.Addr)
	if err := k.readVA(raw, start.Addr); err != nil {
		return nil, fmt.Errorf("btf: %w", err)
	}
	if k.BTF, err = btf.LoadSpecFromReader(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("btf: %w", err)
	}
	if err := k.pageTables(); err != nil {
		return nil, err
	}
	pob, ok := ks.Lookup("page_offset_base")
	if !ok {
		return nil, errors.New("no page_offset_base symbol")
	}
	if k.PageOffset, err = k.U64(pob.Addr); err != nil {
		return nil, fmt.Errorf("page_offset_base: %w", err)
	}
	if !k.kernelPtr(k.PageOffset) || k.PageOffset >= KernelMapBase || k.PageOffset&0x3fffffff != 0 {
		return nil, fmt.Errorf("page_offset_base %#x is implausible", k.PageOffset)
	}
	if err := k.layouts(); err != nil {
		return nil, err
	}
	if err := k.detailLayout(); err != nil {
		return nil, err
	}
	k.heldErr = k.heldLayout()
	return k, nil
}

// PA translates a kernel virtual address to a physical address: the kernel
// image and the direct map by their fixed offsets, everything else (vmalloc,
// modules) through the guest's page tables.
func (k *Kernel) PA(va uint64) (int64, error) {
	switch {
	case va >= KernelMapBase && va < ModuleBase:
		return k.Info.KernelPA(va)
	case va >= k.PageOffset && va-k.PageOffset < uint64(k.PhysSize):
		return int64(va - k.PageOffset), nil
	}
	return k.Walk(va)
}

func (k *Kernel) readVA(b []byte, va uint64) error {
	pa, err := k.PA(va)
	if err != nil {
		return err
	}
	if _, err := k.Mem.ReadAt(b, pa); err != nil {
		return err
	}
	return nil
}

// U64 reads a little-endian 64-bit value at a kernel address.
func (k *Kernel) U64(va uint64) (uint64, error) {
	var b [8]byte
	if err := k.readVA(b[:], va); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Process is one task as the kernel's structures describe it.
type Process struct {
	Task      uint64 `json:"task"` // task_struct address
	PID       int32  `json:"pid"`
	TGID      int32  `json:"tgid"`
	PPID      int32  `json:"ppid"`
	Comm      string `json:"comm"`
	ExitState uint32 `json:"exit_state,omitempty"`
	Kernel    bool   `json:"kernel_thread"` // no mm
	// Filled by Details.
	UID   uint32 `json:"uid"`
	Start uint64 `json:"start_ns"`      // since boot (CLOCK_MONOTONIC)
	Exe   string `json:"exe,omitempty"` // executable path, where resolvable
	// Cmdline is the command line from the process's own memory, where
	// its pages are resident; Env its environment, only when asked for.
	Cmdline []string `json:"cmdline,omitempty"`
	Env     []string `json:"env,omitempty"`
}

// MaxTasks bounds a list walk (a cycle the guest built must end).
const MaxTasks = 1 << 16

// ErrListCorrupt is returned when the task list does not close.
var ErrListCorrupt = errors.New("task list corrupt")

// span is how many bytes of a task_struct the members we read cover (the
// layout comes from the guest's BTF: any order is possible).
func (l TaskLayout) span() uint32 {
	return max(l.Comm+16, l.Tasks+16, l.Pid+4, l.Tgid+4, l.RealParent+8, l.ExitState+4, l.Flags+4, l.Mm+8, l.ThreadPid+8, l.PidLinks+16)
}

// ReadTask reads one task_struct.
func (k *Kernel) ReadTask(task uint64) (Process, error) {
	l := k.Task
	buf := make([]byte, l.span())
	if err := k.readVA(buf, task); err != nil {
		return Process{}, err
	}
	p := Process{Task: task,
		PID:       int32(binary.LittleEndian.Uint32(buf[l.Pid:])),
		TGID:      int32(binary.LittleEndian.Uint32(buf[l.Tgid:])),
		ExitState: binary.LittleEndian.Uint32(buf[l.ExitState:]),
		Kernel:    binary.LittleEndian.Uint64(buf[l.Mm:]) == 0,
	}
	comm := buf[l.Comm : l.Comm+16]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}
	p.Comm = string(comm)
	if parent := binary.LittleEndian.Uint64(buf[l.RealParent:]); parent != 0 {
		var pb [4]byte
		if err := k.readVA(pb[:], parent+uint64(l.Pid)); err == nil {
			p.PPID = int32(binary.LittleEndian.Uint32(pb[:]))
		}
	}
	return p, nil
}

// ListProcesses walks init_task.tasks (the view ps has). It stops with
// ErrListCorrupt, and what it read so far, when the list does not close
// within MaxTasks or leads outside memory.
func (k *Kernel) ListProcesses() ([]Process, error) {
	it, ok := k.Syms.Lookup("init_task")
	if !ok {
		return nil, errors.New("no init_task symbol")
	}
	var out []Process
	seen := map[uint64]bool{}
	task := it.Addr
	for i := 0; i < MaxTasks; i++ {
		p, err := k.ReadTask(task)
		if err != nil {
			return out, fmt.Errorf("%w: task %#x: %v", ErrListCorrupt, task, err)
		}
		out = append(out, p)
		seen[task] = true
		next, err := k.U64(task + uint64(k.Task.Tasks))
		if err != nil {
			return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
		}
		task = next - uint64(k.Task.Tasks)
		if task == it.Addr {
			return out, nil
		}
		if seen[task] {
			return out, fmt.Errorf("%w: cycle at %#x", ErrListCorrupt, task)
		}
	}
	return out, fmt.Errorf("%w: more than %d tasks", ErrListCorrupt, MaxTasks)
}
