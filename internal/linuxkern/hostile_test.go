package linuxkern

import (
	"encoding/binary"
	"errors"
	"testing"
)

// fakeRAM is guest memory the test writes by hand.
type fakeRAM []byte

func (f fakeRAM) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(f)) {
		return 0, errors.New("outside RAM")
	}
	n := copy(p, f[off:])
	if n < len(p) {
		return n, errors.New("short")
	}
	return n, nil
}

const pageOffset = 0xffff888000000000

func hostileKernel(ram fakeRAM, initTaskPA int64) *Kernel {
	it := uint64(KernelMapBase) + uint64(initTaskPA) // phys_base 0: text va = base + pa
	ks := &Kallsyms{Syms: []Symbol{{Name: "init_task", Type: 'D', Addr: it}}, byName: map[string]int{"init_task": 0}}
	return &Kernel{Mem: ram, Info: &VMCoreInfo{}, Syms: ks, PageOffset: pageOffset,
		Task: TaskLayout{Tasks: 16, Pid: 32, Tgid: 36, Comm: 40, RealParent: 56, ExitState: 64, Flags: 0, Mm: 72}}
}

// task writes a task_struct at pa whose tasks.next points at next's list head.
func task(ram fakeRAM, pa int64, pid int32, comm string, nextTask uint64) {
	binary.LittleEndian.PutUint64(ram[pa+16:], nextTask+16)
	binary.LittleEndian.PutUint32(ram[pa+32:], uint32(pid))
	binary.LittleEndian.PutUint32(ram[pa+36:], uint32(pid))
	copy(ram[pa+40:pa+56], comm)
}

func TestHostileTaskLists(t *testing.T) {
	ram := make(fakeRAM, 1<<20)
	dm := func(pa int64) uint64 { return pageOffset + uint64(pa) }
	k := hostileKernel(ram, 0x1000)
	it := uint64(KernelMapBase) + 0x1000

	// A well-formed ring of three.
	task(ram, 0x1000, 0, "swapper", dm(0x2000))
	task(ram, 0x2000, 1, "init", dm(0x3000))
	task(ram, 0x3000, 2, "kthreadd", it)
	ps, err := k.ListProcesses()
	if err != nil || len(ps) != 3 || ps[1].Comm != "init" {
		t.Fatalf("ring: %v %+v", err, ps)
	}
	// A cycle that never returns to init_task: bounded, flagged, partial.
	task(ram, 0x3000, 2, "kthreadd", dm(0x2000))
	ps, err = k.ListProcesses()
	if !errors.Is(err, ErrListCorrupt) || len(ps) != 3 {
		t.Fatalf("cycle: %v, %d tasks", err, len(ps))
	}
	// A pointer to nowhere.
	task(ram, 0x3000, 2, "kthreadd", 0xdead000000000100)
	if _, err := k.ListProcesses(); !errors.Is(err, ErrListCorrupt) {
		t.Fatalf("poison pointer: %v", err)
	}
	// A pointer past the end of RAM.
	task(ram, 0x3000, 2, "kthreadd", dm(1<<40))
	if _, err := k.ListProcesses(); !errors.Is(err, ErrListCorrupt) {
		t.Fatalf("pointer past RAM: %v", err)
	}
	// The scan over garbage and over this RAM ends and finds no hidden task.
	cands, st, err := k.ScanTasks(int64(len(ram)), nil)
	if err != nil || st.Positions == 0 {
		t.Fatalf("scan: %v %+v", err, st)
	}
	for _, c := range cands {
		if c.Status == "hidden" && c.PPID == 0 && c.Comm == "" {
			t.Fatalf("garbage candidate %+v", c)
		}
	}
}

func FuzzListProcesses(f *testing.F) {
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		ram := make(fakeRAM, 1<<16)
		copy(ram, b)
		k := hostileKernel(ram, 0)
		k.ListProcesses() // must end: bounded walk
		k.ScanTasks(int64(len(ram)), nil)
	})
}
