package linuxkern

import (
	"encoding/binary"
	"errors"
	"testing"

	"secaas/internal/memio"
)

const pageOffset = 0xffff888000000000

func hostileKernel(ram memio.Bytes, initTaskPA int64) *Kernel {
	it := uint64(KernelMapBase) + uint64(initTaskPA) // phys_base 0: text va = base + pa
	mods := uint64(KernelMapBase) + 0x100            // the "modules" list head
	ks := &Kallsyms{Syms: []Symbol{{Name: "init_task", Type: 'D', Addr: it}, {Name: "modules", Type: 'D', Addr: mods}},
		byName: map[string]int{"init_task": 0, "modules": 1}}
	return &Kernel{Mem: ram, Info: &VMCoreInfo{}, Syms: ks, PageOffset: pageOffset, PhysSize: int64(len(ram)),
		TopPGT: 0x10000, Levels: 4,
		Task:   TaskLayout{Tasks: 16, Pid: 32, Tgid: 36, Comm: 40, RealParent: 56, ExitState: 64, Flags: 0, Mm: 72, ThreadPid: 80, PidLinks: 88},
		Pid:    PidLayout{Tasks: 8, Numbers: 48},
		Module: ModuleLayout{State: 0, List: 8, Name: 24, NameLen: 56, MkobjMod: 80, CoreBase: 88, CoreSize: 96}}
}

// task writes a task_struct at pa whose tasks.next points at next's list head.
func task(ram memio.Bytes, pa int64, pid int32, comm string, nextTask uint64) {
	binary.LittleEndian.PutUint64(ram[pa+16:], nextTask+16)
	binary.LittleEndian.PutUint32(ram[pa+32:], uint32(pid))
	binary.LittleEndian.PutUint32(ram[pa+36:], uint32(pid))
	copy(ram[pa+40:pa+56], comm)
}

func TestHostileTaskLists(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
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

// pte writes a page-table entry.
func pte(ram memio.Bytes, table int64, idx uint64, val uint64) {
	binary.LittleEndian.PutUint64(ram[table+int64(idx)*8:], val)
}

// TestPageTableWalk: 4 KiB, 2 MiB and 1 GiB pages translate; absent
// entries, non-canonical addresses and tables pointing outside RAM end in
// errors; 5-level paging adds a level.
func TestPageTableWalk(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	k := hostileKernel(ram, 0x1000)
	va := uint64(0xffffffffc0201234) // pml4 511, pdpt 511, pd 1, pt 1
	pte(ram, 0x10000, 511, 0x11000|3)
	pte(ram, 0x11000, 511, 0x12000|3)
	pte(ram, 0x12000, 1, 0x13000|3)
	pte(ram, 0x13000, 1, 0x8000000000077000|3) // NX set: ignored
	if pa, err := k.Walk(va); err != nil || pa != 0x77234 {
		t.Fatalf("4k: %#x %v", pa, err)
	}
	pte(ram, 0x12000, 1, 0x40000000|0x80|3) // a 2 MiB page
	if pa, err := k.Walk(va); err != nil || pa != 0x40001234 {
		t.Fatalf("2M: %#x %v", pa, err)
	}
	pte(ram, 0x11000, 511, 0x80000000|0x80|3) // a 1 GiB page
	if pa, err := k.Walk(va); err != nil || pa != 0x80201234 {
		t.Fatalf("1G: %#x %v", pa, err)
	}
	pte(ram, 0x11000, 511, 0x12000) // not present
	if _, err := k.Walk(va); !errors.Is(err, ErrNotMapped) {
		t.Fatalf("absent: %v", err)
	}
	pte(ram, 0x11000, 511, 0xfff0000000|3) // table outside RAM
	if _, err := k.Walk(va); err == nil {
		t.Fatal("a table outside RAM translated")
	}
	if _, err := k.Walk(0x0000900000000000); err == nil {
		t.Fatal("non-canonical address translated")
	}
	k.Levels = 5
	pte(ram, 0x10000, 511, 0x14000|3) // pml5 511 -> the pml4 above
	pte(ram, 0x14000, 511, 0x11000|3)
	pte(ram, 0x11000, 511, 0x12000|3)
	pte(ram, 0x12000, 1, 0x13000|3)
	if pa, err := k.Walk(va); err != nil || pa != 0x77234 {
		t.Fatalf("5-level: %#x %v", pa, err)
	}
}

// TestHostileModuleList: a module list that cycles, or leads to a page
// the tables do not map, ends with ErrListCorrupt and a partial list.
func TestHostileModuleList(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	k := hostileKernel(ram, 0x1000)
	head := uint64(KernelMapBase) + 0x100
	// Map module VAs 0xffffffffc0000000 + n*4096 to pa 0x20000 + n*4096.
	pte(ram, 0x10000, 511, 0x11000|3)
	pte(ram, 0x11000, 511, 0x12000|3)
	pte(ram, 0x12000, 0, 0x13000|3)
	for n := uint64(0); n < 8; n++ {
		pte(ram, 0x13000, n, (0x20000+n*4096)|3)
	}
	mod := func(n uint64, name string, next uint64) uint64 {
		va := uint64(ModuleBase) + n*4096
		pa := 0x20000 + n*4096
		binary.LittleEndian.PutUint64(ram[pa+8:], next)
		binary.LittleEndian.PutUint64(ram[pa+16:], head)
		copy(ram[pa+24:pa+80], name)
		binary.LittleEndian.PutUint64(ram[pa+80:], va)
		return va
	}
	a := mod(0, "alpha", uint64(ModuleBase)+4096+8)
	mod(1, "beta", head)
	binary.LittleEndian.PutUint64(ram[0x100:], a+8)
	ms, err := k.ListModules()
	if err != nil || len(ms) != 2 || ms[1].Name != "beta" {
		t.Fatalf("ring: %v %+v", err, ms)
	}
	cands, _, err := k.ScanModules(int64(len(ram)), ms[:1])
	if err != nil || len(cands) != 2 || cands[0].Status != "listed" || cands[1].Status != "hidden" {
		t.Fatalf("scan: %v %+v", err, cands)
	}
	mod(1, "beta", a+8) // a cycle
	if ms, err := k.ListModules(); !errors.Is(err, ErrListCorrupt) || len(ms) != 2 {
		t.Fatalf("cycle: %v %+v", err, ms)
	}
	mod(1, "beta", uint64(ModuleBase)+100*4096+8) // unmapped
	if _, err := k.ListModules(); !errors.Is(err, ErrListCorrupt) {
		t.Fatalf("unmapped: %v", err)
	}
}

func FuzzListProcesses(f *testing.F) {
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		ram := make(memio.Bytes, 1<<16)
		copy(ram, b)
		k := hostileKernel(ram, 0)
		k.ListProcesses() // must end: bounded walk
		k.ScanTasks(int64(len(ram)), nil)
		k.ListModules()
		k.ScanModules(int64(len(ram)), nil)
	})
}

// TestClassifyUnlistedTask: a task off the task list is hidden when its
// own struct pid still carries its number (attached or not, or when the
// pid was detached to NULL, as detach_pid leaves it), and not when its
// struct pid carries another number: a task mid-fork still points at its
// parent's, and a freed one whose fork failed may too.
func TestClassifyUnlistedTask(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	dm := func(pa int64) uint64 { return pageOffset + uint64(pa) }
	k := hostileKernel(ram, 0x1000)
	it := uint64(KernelMapBase) + 0x1000
	task(ram, 0x1000, 0, "swapper", dm(0x2000))
	task(ram, 0x2000, 1, "init", it)
	listed, err := k.ListProcesses()
	if err != nil {
		t.Fatal(err)
	}
	const pa, pidPA = 0x5000, 0x6000
	for _, tc := range []struct {
		name     string
		pidNr    uint32 // the number in the task's struct pid
		threadOK bool   // thread_pid set (else NULL)
		attached bool   // the struct pid's task list heads this task
		want     string
	}{
		{"unlinked, still in /proc", 77, true, true, "hidden"},
		{"unlinked and unhashed", 77, true, false, "hidden"},
		{"pid detached to NULL", 0, false, false, "hidden"},
		{"mid-fork: the parent's pid", 1, true, false, "exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(ram[pa : pa+0x100])
			clear(ram[pidPA : pidPA+0x100])
			task(ram, pa, 77, "sh", dm(0x2000))
			binary.LittleEndian.PutUint64(ram[pa+24:], dm(0x2000)+16) // tasks.prev
			binary.LittleEndian.PutUint64(ram[pa+56:], dm(0x2000))    // real_parent: init
			binary.LittleEndian.PutUint32(ram[pidPA+48:], tc.pidNr)   // numbers[0].nr
			if tc.threadOK {
				binary.LittleEndian.PutUint64(ram[pa+80:], dm(pidPA))
			}
			if tc.attached {
				binary.LittleEndian.PutUint64(ram[pidPA+8:], dm(pa)+88) // tasks[PIDTYPE_PID].first
			}
			cs, _, err := k.ScanTasksAt([]Candidate{{PA: pa}}, listed)
			if err != nil || len(cs) != 1 || cs[0].Status != tc.want {
				t.Fatalf("%+v %v, want %s", cs, err, tc.want)
			}
		})
	}
}
