package winkern

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Profile is the EPROCESS layout of one Windows build.
type Profile struct {
	Name       string
	Pointer    int // 4 or 8
	HeaderSize byte
	// Offsets in EPROCESS (Pcb, the KPROCESS, is at 0).
	DirectoryTableBase, ThreadListHead, CreateTime, ExitTime   int
	UniqueProcessID, ActiveProcessLinks, InheritedFromUniqueID int
	ImageFileName                                              int
	// Lowest kernel-space address (the paper's "> 0x80000000" for x86).
	KernelBase uint64
	// Paging: "pae" (x86, 3 levels) or "4level" (x64).
	Paging string
	Align  int // pool alignment of EPROCESS
}

// Windows 7 SP1 profiles (ntoskrnl public symbols).
var (
	Win7SP1x86 = Profile{Name: "Win7SP1x86", Pointer: 4, HeaderSize: 0x26,
		DirectoryTableBase: 0x18, ThreadListHead: 0x2c, CreateTime: 0xa0, ExitTime: 0xa8,
		UniqueProcessID: 0xb4, ActiveProcessLinks: 0xb8, InheritedFromUniqueID: 0x140, ImageFileName: 0x16c,
		KernelBase: 0x80000000, Paging: "pae", Align: 8}
	Win7SP1x64 = Profile{Name: "Win7SP1x64", Pointer: 8, HeaderSize: 0x58,
		DirectoryTableBase: 0x28, ThreadListHead: 0x30, CreateTime: 0x168, ExitTime: 0x170,
		UniqueProcessID: 0x180, ActiveProcessLinks: 0x188, InheritedFromUniqueID: 0x290, ImageFileName: 0x2e0,
		KernelBase: 0xffff080000000000, Paging: "4level", Align: 16}
)

// Profiles are the known Windows profiles.
var Profiles = []Profile{Win7SP1x86, Win7SP1x64}

func (p Profile) span() int { return p.ImageFileName + 15 }

func (p Profile) ptr(b []byte) uint64 {
	if p.Pointer == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// Process is one EPROCESS.
type Process struct {
	PA         int64  `json:"pa"`
	PID        uint64 `json:"pid"`
	PPID       uint64 `json:"ppid"`
	Name       string `json:"name"`
	CreateTime uint64 `json:"create_time"` // FILETIME: 100 ns since 1601
	DTB        uint64 `json:"dtb"`
	Links      uint64 `json:"-"`                // ActiveProcessLinks.Flink
	Status     string `json:"status,omitempty"` // listed, hidden
}

// Fingerprint is the paper's Algorithm 2 (IsRealSomeKernelObject for
// EPROCESS), with two invariants added that cost nothing and cut random
// matches: a printable, NUL-terminated ImageFileName and a pid that is a
// multiple of 4 (Windows allocates them so).
func (p Profile) Fingerprint(b []byte) (Process, bool) {
	if len(b) < p.span() || b[0] != 0x03 || b[2] != p.HeaderSize {
		return Process{}, false
	}
	le := binary.LittleEndian
	dtb := p.ptr(b[p.DirectoryTableBase:])
	flink, blink := p.ptr(b[p.ThreadListHead:]), p.ptr(b[p.ThreadListHead+p.Pointer:])
	if dtb%0x20 != 0 || dtb == 0 || flink < p.KernelBase || blink < p.KernelBase {
		return Process{}, false
	}
	create, exit := le.Uint64(b[p.CreateTime:]), le.Uint64(b[p.ExitTime:])
	if create == 0 || exit != 0 {
		return Process{}, false
	}
	pid := p.ptr(b[p.UniqueProcessID:])
	if pid%4 != 0 || pid > 1<<32 {
		return Process{}, false
	}
	name := b[p.ImageFileName : p.ImageFileName+15]
	n := bytes.IndexByte(name, 0)
	if n <= 0 {
		return Process{}, false
	}
	for _, c := range name[:n] {
		if c < 0x20 || c > 0x7e {
			return Process{}, false
		}
	}
	return Process{PID: pid, PPID: p.ptr(b[p.InheritedFromUniqueID:]), Name: string(name[:n]), CreateTime: create,
		DTB: dtb, Links: p.ptr(b[p.ActiveProcessLinks:])}, true
}

// Scan tests every aligned offset of physical memory [0, size).
func (p Profile) Scan(mem io.ReaderAt, size int64) ([]Process, error) {
	const chunk = 8 << 20
	span := int64(p.span())
	buf := make([]byte, chunk+span)
	var out []Process
	for base := int64(0); base < size; base += chunk {
		n, err := mem.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if n == 0 && err != nil && err != io.EOF {
			return out, fmt.Errorf("scan at %#x: %w", base, err)
		}
		for off := int64(0); off+span <= int64(n) && off < chunk; off += int64(p.Align) {
			if pr, ok := p.Fingerprint(buf[off:n]); ok {
				pr.PA = base + off
				out = append(out, pr)
			}
		}
	}
	return out, nil
}

// ErrListCorrupt is returned when the process ring does not close.
var ErrListCorrupt = errors.New("process list corrupt")

// MaxProcesses bounds a ring walk.
const MaxProcesses = 1 << 16

// Translate maps a kernel virtual address to a physical one through the
// page tables at dtb.
func (p Profile) Translate(mem io.ReaderAt, dtb, va uint64) (int64, error) {
	read := func(pa uint64) (uint64, error) {
		var b [8]byte
		if _, err := mem.ReadAt(b[:], int64(pa)); err != nil {
			return 0, err
		}
		e := binary.LittleEndian.Uint64(b[:])
		if e&1 == 0 {
			return 0, fmt.Errorf("%#x not mapped", va)
		}
		return e, nil
	}
	const addr = 0x000ffffffffff000
	switch p.Paging {
	case "pae": // PDPT (4 x 8 bytes at dtb), PD, PT; 2 MiB large pages
		pdpte, err := read(dtb&^0x1f + (va>>30&3)*8)
		if err != nil {
			return 0, err
		}
		pde, err := read(pdpte&addr + (va>>21&511)*8)
		if err != nil {
			return 0, err
		}
		if pde&0x80 != 0 {
			return int64(pde&addr&^0x1fffff | va&0x1fffff), nil
		}
		pte, err := read(pde&addr + (va>>12&511)*8)
		if err != nil {
			return 0, err
		}
		return int64(pte&addr | va&0xfff), nil
	case "4level":
		table := dtb &^ 0xfff
		for level := 4; level >= 1; level-- {
			shift := uint(12 + 9*(level-1))
			e, err := read(table + (va>>shift&511)*8)
			if err != nil {
				return 0, err
			}
			if (level == 3 || level == 2) && e&0x80 != 0 {
				size := uint64(1) << shift
				return int64(e&addr&^(size-1) | va&(size-1)), nil
			}
			table = e & addr
		}
		return int64(table | va&0xfff), nil
	}
	return 0, fmt.Errorf("unknown paging %q", p.Paging)
}

// Walk follows the ActiveProcessLinks ring from the EPROCESS at startPA
// (found by the scan, e.g. System), translating through dtb. It returns
// the physical addresses of the EPROCESSes on the ring.
func (p Profile) Walk(mem io.ReaderAt, dtb uint64, startPA int64) ([]int64, error) {
	var out []int64
	seen := map[int64]bool{}
	b := make([]byte, p.Pointer)
	pa := startPA
	for i := 0; i < MaxProcesses; i++ {
		out = append(out, pa)
		seen[pa] = true
		if _, err := mem.ReadAt(b, pa+int64(p.ActiveProcessLinks)); err != nil {
			return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
		}
		next, err := p.Translate(mem, dtb, p.ptr(b))
		if err != nil {
			return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
		}
		// The ring passes through PsActiveProcessHead, which is not inside
		// an EPROCESS: step over it.
		nextEP := next - int64(p.ActiveProcessLinks)
		if !p.isEProcess(mem, nextEP) {
			if _, err := mem.ReadAt(b, next); err != nil {
				return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
			}
			if next, err = p.Translate(mem, dtb, p.ptr(b)); err != nil {
				return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
			}
			nextEP = next - int64(p.ActiveProcessLinks)
		}
		if nextEP == startPA {
			return out, nil
		}
		if seen[nextEP] {
			return out, fmt.Errorf("%w: cycle at %#x", ErrListCorrupt, nextEP)
		}
		pa = nextEP
	}
	return out, fmt.Errorf("%w: more than %d processes", ErrListCorrupt, MaxProcesses)
}

func (p Profile) isEProcess(mem io.ReaderAt, pa int64) bool {
	if pa < 0 {
		return false
	}
	b := make([]byte, p.span())
	if _, err := mem.ReadAt(b, pa); err != nil {
		return false
	}
	_, ok := p.Fingerprint(b)
	return ok
}

// Hidden scans memory, walks the ring from the System process (pid 4) and
// marks every live scanned process listed or hidden.
func (p Profile) Hidden(mem io.ReaderAt, size int64) ([]Process, error) {
	procs, err := p.Scan(mem, size)
	if err != nil {
		return nil, err
	}
	var system *Process
	for i := range procs {
		if procs[i].PID == 4 {
			system = &procs[i]
			break
		}
	}
	if system == nil {
		return procs, errors.New("no System process (pid 4) found: not this profile's memory?")
	}
	ring, err := p.Walk(mem, system.DTB, system.PA)
	if err != nil {
		return procs, err
	}
	on := map[int64]bool{}
	for _, pa := range ring {
		on[pa] = true
	}
	for i := range procs {
		procs[i].Status = "hidden"
		if on[procs[i].PA] {
			procs[i].Status = "listed"
		}
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	return procs, nil
}
