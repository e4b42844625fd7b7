package linuxkern

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"secaas/internal/guestmem"
)

// Candidate is a task_struct found by scanning physical memory.
type Candidate struct {
	Process
	PA     int64  `json:"pa"`
	Status string `json:"status"` // listed, thread, idle, hidden, exited, stale
	// Evidence says why a hidden task is believed hidden.
	Evidence []string `json:"evidence,omitempty"`
}

// Scan statistics.
type ScanStats struct {
	Bytes      int64
	Positions  int64 // aligned offsets looked at
	Candidates int   // passed the fingerprint
}

// scanAlign is the alignment of the structures scanned for (task_struct
// and struct module are cache-line aligned).
const scanAlign = 64

// eachChunk hands physical memory to visit in pieces: b holds the bytes
// from physical address base, and visit must test the scanAlign-aligned
// offsets below limit whose span bytes fit in b (the bytes past limit are
// the overlap into the next piece). Sources that expose their segments
// (guestmem.Mem) are scanned without copying. The loop over offsets stays
// in the caller, with its fast reject inline: a call per offset would cost
// more than the test.
func (k *Kernel) eachChunk(size, span int64, visit func(base int64, b []byte, limit int64)) (ScanStats, error) {
	var st ScanStats
	count := func(base int64, n, limit int64) {
		start := (scanAlign - base%scanAlign) % scanAlign
		if end := min(limit, n-span+1); end > start {
			st.Positions += (end - start + scanAlign - 1) / scanAlign
		}
	}
	if sm, ok := k.Mem.(interface{ Segments() []guestmem.Segment }); ok {
		for _, s := range sm.Segments() {
			st.Bytes += int64(len(s.Data))
			count(s.PA, int64(len(s.Data)), int64(len(s.Data)))
			visit(s.PA, s.Data, int64(len(s.Data)))
		}
		return st, nil
	}
	const chunk = 8 << 20
	buf := make([]byte, chunk+span)
	for base := int64(0); base < size; base += chunk {
		n, err := k.Mem.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if err != nil && err != io.EOF && n == 0 {
			return st, fmt.Errorf("scan at %#x: %w", base, err)
		}
		st.Bytes += int64(min(n, chunk))
		count(base, int64(n), chunk)
		visit(base, buf[:n], chunk)
	}
	return st, nil
}

// alignedFrom is the first scanAlign-aligned offset in a piece at base.
func alignedFrom(base int64) int64 { return (scanAlign - base%scanAlign) % scanAlign }

// ScanTasks is the paper's fingerprint scan (Algorithm 2) for Linux: every
// cache-line-aligned offset of physical memory is tested as a task_struct
// with invariants taken from the guest's own BTF layout — a printable comm,
// plausible pid and tgid, exit_state one of the kernel's values, mm either
// empty or a direct-map pointer, tasks list pointers in kernel space, and a
// real_parent that is itself a plausible task. Each survivor is then
// compared with the task list and with its own struct pid:
//
//   - listed: on the task list and attached to its pid;
//   - thread: a thread (pid != tgid) of a listed process;
//   - idle: a per-CPU idle task (pid 0), never on the list;
//   - exited: exit_state set (a zombie, or freed memory of a dead task),
//     or its thread_pid is a struct pid of another number (a task mid-fork
//     still has its parent's; a live task always holds its own);
//   - stale: its pid belongs to a listed task now (freed memory, pid reused);
//   - hidden: alive and either off the task list with its pid unlisted, or
//     detached from its struct pid (invisible in /proc) — each with evidence.
func (k *Kernel) ScanTasks(size int64, listed []Process) ([]Candidate, ScanStats, error) {
	v := k.listView(listed)
	var out []Candidate
	l := k.Task
	span := int64(l.span())
	st, err := k.eachChunk(size, span, func(base int64, b []byte, limit int64) {
		for off := alignedFrom(base); off < limit && off+span <= int64(len(b)); off += scanAlign {
			// Fast reject, inline: most of RAM fails on the first byte of
			// comm, or on the pid's top byte (pids are below 2^22).
			if c := b[off+int64(l.Comm)]; c < 0x20 || c > 0x7e || b[off+int64(l.Pid)+3] != 0 {
				continue
			}
			if c, ok := k.classifyTask(base+off, b[off:], v); ok {
				out = append(out, c)
			}
		}
	})
	st.Candidates = len(out)
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, st, err
}

// ScanTasksAt classifies again the candidates of an earlier scan, reading
// them afresh, against a newer list: a task born between a list walk and a
// scan is listed by now. Candidates that no longer look like tasks are
// dropped.
func (k *Kernel) ScanTasksAt(cands []Candidate, listed []Process) ([]Candidate, ScanStats, error) {
	v := k.listView(listed)
	buf := make([]byte, k.Task.span())
	var out []Candidate
	var st ScanStats
	for _, c := range cands {
		st.Positions++
		if _, err := k.Mem.ReadAt(buf, c.PA); err != nil {
			continue
		}
		if c2, ok := k.classifyTask(c.PA, buf, v); ok {
			out = append(out, c2)
		}
	}
	st.Candidates = len(out)
	return out, st, nil
}

// listView is a task list indexed for classification.
type listView struct {
	inList   map[int64]bool // by physical address
	pidOwner map[int32]bool
}

func (k *Kernel) listView(listed []Process) listView {
	// Compare by physical address: init_task is listed by its kernel-text
	// address but found by the scan through the direct map.
	v := listView{inList: map[int64]bool{}, pidOwner: map[int32]bool{}}
	for _, p := range listed {
		if pa, err := k.PA(p.Task); err == nil {
			v.inList[pa] = true
		}
		v.pidOwner[p.PID] = true
	}
	return v
}

// classifyTask applies the fingerprint to the bytes t at physical address
// pa and, if they pass, classifies the task against the list.
func (k *Kernel) classifyTask(pa int64, t []byte, v listView) (Candidate, bool) {
	l := k.Task
	// Fast reject: most of RAM fails on the first byte of comm, or on the
	// pid's top byte (pids are below 2^22).
	if c := t[l.Comm]; c < 0x20 || c > 0x7e || t[l.Pid+3] != 0 {
		return Candidate{}, false
	}
	if !printableComm(t[l.Comm : l.Comm+16]) {
		return Candidate{}, false
	}
	pid := int32(binary.LittleEndian.Uint32(t[l.Pid:]))
	tgid := int32(binary.LittleEndian.Uint32(t[l.Tgid:]))
	if pid < 0 || pid > 4194304 || tgid < 0 || tgid > 4194304 || (pid == 0) != (tgid == 0) {
		return Candidate{}, false
	}
	es := binary.LittleEndian.Uint32(t[l.ExitState:])
	if es != 0 && es != 16 && es != 32 && es != 48 {
		return Candidate{}, false
	}
	mm := binary.LittleEndian.Uint64(t[l.Mm:])
	if mm != 0 && (mm < k.PageOffset || mm-k.PageOffset >= uint64(k.PhysSize)) {
		return Candidate{}, false
	}
	next := binary.LittleEndian.Uint64(t[l.Tasks:])
	prev := binary.LittleEndian.Uint64(t[l.Tasks+8:])
	if !k.kernelPtr(next) || !k.kernelPtr(prev) {
		return Candidate{}, false
	}
	parent := binary.LittleEndian.Uint64(t[l.RealParent:])
	pp, err := k.ReadTask(parent)
	if err != nil || pp.PID < 0 || pp.PID > 4194304 || !printableComm(append([]byte(pp.Comm), 0)) {
		return Candidate{}, false
	}
	c := Candidate{PA: pa}
	c.Process, _ = k.ReadTask(k.PageOffset + uint64(pa))
	c.PPID = pp.PID
	attached, allocated, other := k.pidAttached(pa, t)
	switch {
	case es != 0:
		c.Status = "exited"
	case other && !v.inList[pa]:
		// Its thread_pid is a struct pid of another number: a live task
		// always holds its own, so this is a task being forked (it still
		// has its parent's; a later walk lists it) or the freed memory of
		// one whose fork failed. Not a hidden process.
		c.Status = "exited"
	case pid == 0 && v.inList[pa]: // init_task: idle tasks never attach to a pid
		c.Status = "listed"
	case pid == 0:
		c.Status = "idle"
	case v.inList[pa] && attached:
		c.Status = "listed"
	case v.inList[pa]:
		c.Status = "hidden"
		c.Evidence = append(c.Evidence, fmt.Sprintf("on the task list but detached from pid %d: invisible in /proc", c.PID))
	case pid != tgid && v.pidOwner[tgid] && attached:
		c.Status = "thread"
	case v.pidOwner[c.PID]:
		c.Status = "stale" // its pid belongs to a listed task now
	default:
		c.Status = "hidden"
		c.Evidence = append(c.Evidence, "not on the task list")
		if allocated && !attached {
			c.Evidence = append(c.Evidence, fmt.Sprintf("pid %d is allocated with no task attached: unhashed from /proc", c.PID))
		}
	}
	return c, true
}

// pidAttached checks a task (at physical address pa, bytes t) against its
// own struct pid: allocated says the pid struct still carries the task's
// pid number; other that it carries another (a task mid-fork still has its
// parent's; a freed one's may be reused); attached says the task heads the
// pid's PIDTYPE_PID list, as every live task does (that list is how /proc
// finds a task).
func (k *Kernel) pidAttached(pa int64, t []byte) (attached, allocated, other bool) {
	pidPtr := binary.LittleEndian.Uint64(t[k.Task.ThreadPid:])
	if !k.kernelPtr(pidPtr) {
		return false, false, false
	}
	var nr [4]byte
	if err := k.readVA(nr[:], pidPtr+uint64(k.Pid.Numbers)); err != nil {
		return false, false, false
	}
	n := binary.LittleEndian.Uint32(nr[:])
	allocated = n == binary.LittleEndian.Uint32(t[k.Task.Pid:])
	other = !allocated && n != 0 && n <= 4194304
	first, err := k.U64(pidPtr + uint64(k.Pid.Tasks))
	if err != nil || first == 0 {
		return false, allocated, other
	}
	headPA, err := k.PA(first - uint64(k.Task.PidLinks))
	return err == nil && headPA == pa, allocated, other
}

// kernelPtr: p is in the kernel half of the address space (from
// 0xffff800000000000 with 4-level paging, 0xff00000000000000 with 5).
func (k *Kernel) kernelPtr(p uint64) bool {
	if k.Levels == 5 {
		return p >= KernelHalf5
	}
	return p >= KernelHalf4
}

// printableComm: 1-15 printable bytes, then NULs to the end (the kernel
// zero-fills comm).
func printableComm(b []byte) bool {
	n := 0
	for n < len(b) && b[n] != 0 {
		if b[n] < 0x20 || b[n] > 0x7e {
			return false
		}
		n++
	}
	if n == 0 || n >= len(b) {
		return false
	}
	for _, c := range b[n:] {
		if c != 0 {
			return false
		}
	}
	return true
}
