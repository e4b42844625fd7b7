package linuxkern

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Candidate is a task_struct found by scanning physical memory.
type Candidate struct {
	Process
	PA     int64  `json:"pa"`
	Status string `json:"status"` // listed, hidden, exited, stale
}

// Scan statistics.
type ScanStats struct {
	Bytes      int64
	Positions  int64 // aligned offsets looked at
	Candidates int   // passed the fingerprint
}

// taskAlign is the task_struct slab alignment (a cache line).
const taskAlign = 64

// ScanTasks is the paper's fingerprint scan (Algorithm 2) for Linux: every
// cache-line-aligned offset of physical memory is tested as a task_struct
// with invariants taken from the guest's own BTF layout — a printable comm,
// plausible pid and tgid, exit_state one of the kernel's values, mm either
// empty or a direct-map pointer, tasks list pointers in kernel space, and a
// real_parent that is itself a plausible task. Each survivor is then
// compared with the task list: listed, exited (exit_state set or pid now
// someone else's), or hidden (alive-looking, its pid absent from the list).
func (k *Kernel) ScanTasks(size int64, listed []Process) ([]Candidate, ScanStats, error) {
	l := k.Task
	span := int64(l.span())
	const chunk = 8 << 20
	var st ScanStats
	// Zero copy when the source is a mapping (guestmem.Mem).
	direct, _ := k.Mem.(interface{ Bytes() []byte })
	var buf []byte
	if direct == nil {
		buf = make([]byte, chunk+span)
	}
	// Compare by physical address: init_task is listed by its kernel-text
	// address but found by the scan through the direct map.
	inList := map[int64]bool{}
	pidOwner := map[int32]bool{}
	for _, p := range listed {
		if pa, err := k.PA(p.Task); err == nil {
			inList[pa] = true
		}
		pidOwner[p.PID] = true
	}
	var out []Candidate
	for base := int64(0); base < size; base += chunk {
		var b []byte
		if direct != nil {
			all := direct.Bytes()
			if base >= int64(len(all)) {
				break
			}
			b = all[base:min(int64(len(all)), base+chunk+span)]
		} else {
			n, err := k.Mem.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
			if err != nil && err != io.EOF {
				return out, st, fmt.Errorf("scan at %#x: %w", base, err)
			}
			b = buf[:n]
		}
		st.Bytes += int64(min(len(b), chunk))
		for off := int64(0); off+span <= int64(len(b)) && off < chunk; off += taskAlign {
			st.Positions++
			t := b[off:]
			// Fast reject: most of RAM fails on the first byte of comm, or
			// on the pid's top byte (pids are below 2^22).
			if c := t[l.Comm]; c < 0x20 || c > 0x7e || t[l.Pid+3] != 0 {
				continue
			}
			if !printableComm(t[l.Comm : l.Comm+16]) {
				continue
			}
			pid := int32(binary.LittleEndian.Uint32(t[l.Pid:]))
			tgid := int32(binary.LittleEndian.Uint32(t[l.Tgid:]))
			if pid < 0 || pid > 4194304 || tgid < 0 || tgid > 4194304 || (pid == 0) != (tgid == 0) {
				continue
			}
			es := binary.LittleEndian.Uint32(t[l.ExitState:])
			if es != 0 && es != 16 && es != 32 && es != 48 {
				continue
			}
			mm := binary.LittleEndian.Uint64(t[l.Mm:])
			if mm != 0 && (mm < k.PageOffset || mm-k.PageOffset >= 1<<46) {
				continue
			}
			next := binary.LittleEndian.Uint64(t[l.Tasks:])
			prev := binary.LittleEndian.Uint64(t[l.Tasks+8:])
			if !kernelPtr(next) || !kernelPtr(prev) {
				continue
			}
			parent := binary.LittleEndian.Uint64(t[l.RealParent:])
			pp, err := k.ReadTask(parent)
			if err != nil || pp.PID < 0 || pp.PID > 4194304 || !printableComm(append([]byte(pp.Comm), 0)) {
				continue
			}
			pa := base + off
			c := Candidate{PA: pa}
			c.Process, _ = k.ReadTask(k.PageOffset + uint64(pa))
			c.PPID = pp.PID
			switch {
			case inList[pa]:
				c.Status = "listed"
			case es != 0:
				c.Status = "exited"
			case pidOwner[c.PID]:
				c.Status = "stale" // its pid belongs to a listed task now
			default:
				c.Status = "hidden"
			}
			st.Candidates++
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, st, nil
}

func kernelPtr(p uint64) bool { return p >= 0xffff800000000000 }

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
