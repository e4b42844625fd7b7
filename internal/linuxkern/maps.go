package linuxkern

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

// Bounds on a memory-map walk.
const (
	MaxMaps       = 1 << 16 // the kernel's default vm.max_map_count is 65530
	maxMapleDepth = 16      // a real maple tree of 65536 entries is 5 deep
	MaxArgBytes   = 128 << 10
)

// userTop is the end of user space with 4-level paging (47 bits); 5-level
// paging extends it to 56 bits.
func (k *Kernel) userTop() uint64 {
	if k.Levels == 5 {
		return 1 << 56
	}
	return 1 << 47
}

// Map is one memory mapping of a process, as /proc/PID/maps shows it.
type Map struct {
	PID    int32  `json:"pid"`
	Comm   string `json:"comm"`
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Perms  string `json:"perms"` // rwxp / rwxs
	Offset uint64 `json:"offset"`
	Path   string `json:"path,omitempty"` // backing file, or [heap], [stack], [vdso], [vvar]
	// HiddenProcess: the holder is a process hidden from the task list
	// (set by the caller, which knows).
	HiddenProcess bool `json:"hidden_process,omitempty"`
}

// vm_flags bits.
const (
	vmRead   = 1
	vmWrite  = 2
	vmExec   = 4
	vmShared = 8
)

// Maps lists a process's memory mappings: from its mm's maple tree (Linux
// 6.1+) or its vm_next list (older), each with its backing file. Mappings
// that are not the process's own (vm_mm elsewhere), inverted, outside user
// space or overlapping another make the walk fail with ErrHostile: a
// listing that mixes in other memory would mislead.
func (k *Kernel) Maps(p Process) ([]Map, error) {
	if k.heldErr != nil {
		return nil, k.heldErr
	}
	h := k.Held
	mm, err := k.U64(p.Task + uint64(k.Task.Mm))
	if err != nil || mm == 0 {
		return nil, err
	}
	var vmas []uint64
	if h.Maple {
		root, err := k.U64(mm + uint64(h.MmMaps))
		if err != nil {
			return nil, fmt.Errorf("pid %d: maple root: %w", p.PID, err)
		}
		if vmas, err = k.mapleEntries(root); err != nil {
			return nil, fmt.Errorf("pid %d: %w", p.PID, err)
		}
	} else if vmas, err = k.vmaList(mm); err != nil {
		return nil, fmt.Errorf("pid %d: %w", p.PID, err)
	}
	var hdr [5]uint64 // start_brk, brk, start_stack, vdso
	for i, o := range []uint32{h.MmStartBrk, h.MmBrk, h.MmStartStack, h.MmVdso} {
		hdr[i], _ = k.U64(mm + uint64(o))
	}
	out := make([]Map, 0, len(vmas))
	b := make([]byte, max(h.VmaStart+8, h.VmaEnd+8, h.VmaMm+8, h.VmaFlags+8, h.VmaPgoff+8, h.VmaFile+8, h.VmaOps+8, h.VmaPrivate+8))
	special, _ := k.Syms.Lookup("special_mapping_vmops")
	le := binary.LittleEndian
	for _, v := range vmas {
		if err := k.readSpan(b, v); err != nil {
			return out, fmt.Errorf("pid %d: vma %#x: %w", p.PID, v, err)
		}
		m := Map{PID: p.PID, Comm: p.Comm, Start: le.Uint64(b[h.VmaStart:]), End: le.Uint64(b[h.VmaEnd:])}
		if owner := le.Uint64(b[h.VmaMm:]); owner != mm {
			return out, fmt.Errorf("pid %d: %w: vma %#x belongs to mm %#x, not %#x", p.PID, ErrHostile, v, owner, mm)
		}
		if m.Start >= m.End || m.End > k.userTop() || m.Start&4095 != 0 || m.End&4095 != 0 {
			return out, fmt.Errorf("pid %d: %w: vma %#x spans %#x-%#x", p.PID, ErrHostile, v, m.Start, m.End)
		}
		flags := le.Uint64(b[h.VmaFlags:])
		m.Perms = perm(flags&vmRead != 0, 'r') + perm(flags&vmWrite != 0, 'w') + perm(flags&vmExec != 0, 'x')
		if flags&vmShared != 0 {
			m.Perms += "s"
		} else {
			m.Perms += "p"
		}
		if file := le.Uint64(b[h.VmaFile:]); file != 0 {
			m.Offset = le.Uint64(b[h.VmaPgoff:]) << 12
			m.Path = k.filePath(file)
		} else {
			switch {
			case special.Addr != 0 && le.Uint64(b[h.VmaOps:]) == special.Addr:
				m.Path = k.specialName(le.Uint64(b[h.VmaPrivate:]))
			case m.Start == hdr[3] && hdr[3] != 0:
				m.Path = "[vdso]"
			case m.Start <= hdr[1] && m.End >= hdr[0] && hdr[1] > hdr[0]:
				m.Path = "[heap]"
			case m.Start <= hdr[2] && hdr[2] < m.End:
				m.Path = "[stack]"
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	for i := 1; i < len(out); i++ {
		if out[i].Start < out[i-1].End {
			return out, fmt.Errorf("pid %d: %w: mappings %#x-%#x and %#x-%#x overlap", p.PID, ErrHostile,
				out[i-1].Start, out[i-1].End, out[i].Start, out[i].End)
		}
	}
	return out, nil
}

// specialName is the name of a special mapping ([vdso], [vvar]): its
// vm_special_mapping's name, read from kernel memory.
func (k *Kernel) specialName(sm uint64) string {
	p, err := k.U64(sm + uint64(k.Held.SpecialName))
	if err != nil {
		return ""
	}
	b := make([]byte, 32)
	if k.readSpan(b, p) != nil {
		return ""
	}
	if i := bytes.IndexByte(b, 0); i > 0 {
		return printable(b[:i])
	}
	return ""
}

func perm(on bool, c byte) string {
	if on {
		return string(c)
	}
	return "-"
}

// Maple tree node encoding (lib/maple_tree.c): a node pointer carries its
// type in bits 3-6 and is 256-byte aligned. The root entry is a node when
// its low two bits are 10 and it is above 4096 (xa_is_node); otherwise it
// is the tree's only entry.
const (
	mapleNodeMask = 0xff
	mapleLeaf64   = 1
	mapleRange64  = 2
	mapleArange64 = 3
)

func mapleIsNode(e uint64) bool { return e&3 == 2 && e > 4096 }

// mapleEntries collects the entries of the maple tree whose root entry is
// root, in index order.
func (k *Kernel) mapleEntries(root uint64) ([]uint64, error) {
	switch {
	case root == 0:
		return nil, nil
	case !mapleIsNode(root):
		return []uint64{root}, nil
	}
	var out []uint64
	err := k.mapleWalk(root, 0, ^uint64(0), 0, map[uint64]bool{}, &out)
	return out, err
}

// mapleWalk collects the entries under node e covering [lo, hi] in index
// order. Each node's slots end at the end ma_data_end finds; a zero pivot
// past slot 0 stands for the node's max, as in mas_logical_pivot. Depth,
// node count and cycles are bounded.
func (k *Kernel) mapleWalk(e, lo, hi uint64, depth int, seen map[uint64]bool, out *[]uint64) error {
	if depth >= maxMapleDepth {
		return fmt.Errorf("%w: maple tree deeper than %d", ErrHostile, maxMapleDepth)
	}
	node := e &^ mapleNodeMask
	if seen[node] || len(seen) > MaxMaps {
		return fmt.Errorf("%w: maple node %#x seen twice or too many nodes", ErrHostile, node)
	}
	seen[node] = true
	h := k.Held
	var pivots, slots, pivOff, slotOff, metaOff uint32
	typ := (e >> 3) & 0xf
	switch typ {
	case mapleLeaf64, mapleRange64:
		pivots, slots, pivOff, slotOff, metaOff = 15, 16, h.R64Pivot, h.R64Slot, h.R64Meta
	case mapleArange64:
		pivots, slots, pivOff, slotOff, metaOff = 9, 10, h.A64Pivot, h.A64Slot, h.A64Meta
	default:
		return fmt.Errorf("%w: maple node %#x of type %d", ErrHostile, node, typ)
	}
	b := make([]byte, 256)
	if err := k.readSpan(b, node); err != nil {
		return fmt.Errorf("maple node %#x: %w", node, err)
	}
	if int(slotOff+8*slots) > len(b) || int(pivOff+8*pivots) > len(b) || int(metaOff) >= len(b) {
		return fmt.Errorf("maple layout: slots past the node")
	}
	le := binary.LittleEndian
	piv := func(i uint32) uint64 { return le.Uint64(b[pivOff+8*i:]) }
	// The node's last slot in use, as ma_data_end finds it: from the
	// metadata when the last pivot is unused, else the pivot that reaches
	// the node's max.
	var end uint32
	switch {
	case typ == mapleArange64 || piv(pivots-1) == 0:
		end = uint32(b[metaOff])
	case piv(pivots-1) == hi:
		end = pivots - 1
	default:
		end = pivots
	}
	if end >= slots {
		return fmt.Errorf("%w: maple node %#x ends at slot %d of %d", ErrHostile, node, end, slots)
	}
	from := lo
	for i := uint32(0); i <= end; i++ {
		pivot := hi // a zero pivot past slot 0, or none, is the node's max
		if i < pivots && (piv(i) != 0 || i == 0) {
			pivot = piv(i)
		}
		if pivot < from || pivot > hi {
			return fmt.Errorf("%w: maple node %#x: pivot %#x outside [%#x, %#x]", ErrHostile, node, pivot, from, hi)
		}
		slot := le.Uint64(b[slotOff+8*i:])
		if typ == mapleLeaf64 {
			if slot != 0 {
				if len(*out) >= MaxMaps {
					return fmt.Errorf("%w: more than %d mappings", ErrHostile, MaxMaps)
				}
				*out = append(*out, slot)
			}
		} else if slot == 0 {
			return fmt.Errorf("%w: maple node %#x: no child in slot %d", ErrHostile, node, i)
		} else if err := k.mapleWalk(slot, from, pivot, depth+1, seen, out); err != nil {
			return err
		}
		if pivot == hi {
			break
		}
		from = pivot + 1
	}
	return nil
}

// vmaList follows mm->mmap and vm_next (kernels before the maple tree).
func (k *Kernel) vmaList(mm uint64) ([]uint64, error) {
	v, err := k.U64(mm + uint64(k.Held.MmMaps))
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	var out []uint64
	for v != 0 {
		if len(out) >= MaxMaps {
			return out, fmt.Errorf("%w: more than %d mappings (a cycle?)", ErrHostile, MaxMaps)
		}
		out = append(out, v)
		if v, err = k.U64(v + uint64(k.Held.VmaNext)); err != nil {
			return out, fmt.Errorf("vm_next: %w", err)
		}
	}
	return out, nil
}

// Args reads a process's command line and environment from its own
// memory, through its page tables (mm->pgd): what /proc/PID/cmdline and
// environ show. Pages the guest has swapped out make it fail; each area is
// bounded by MaxArgBytes.
func (k *Kernel) Args(p Process) (cmdline, env []string, err error) {
	if k.heldErr != nil {
		return nil, nil, k.heldErr
	}
	h := k.Held
	mm, err := k.U64(p.Task + uint64(k.Task.Mm))
	if err != nil || mm == 0 {
		return nil, nil, err
	}
	var v [5]uint64
	for i, o := range []uint32{h.MmPgd, h.MmArgStart, h.MmArgEnd, h.MmEnvStart, h.MmEnvEnd} {
		if v[i], err = k.U64(mm + uint64(o)); err != nil {
			return nil, nil, fmt.Errorf("pid %d: mm: %w", p.PID, err)
		}
	}
	top, err := k.PA(v[0])
	if err != nil {
		return nil, nil, fmt.Errorf("pid %d: pgd: %w", p.PID, err)
	}
	if cmdline, err = k.userStrings(top, v[1], v[2]); err != nil {
		return nil, nil, fmt.Errorf("pid %d: cmdline: %w", p.PID, err)
	}
	if env, err = k.userStrings(top, v[3], v[4]); err != nil {
		return cmdline, nil, fmt.Errorf("pid %d: environ: %w", p.PID, err)
	}
	return cmdline, env, nil
}

// userStrings reads the NUL-separated strings in user memory [start, end)
// of the address space whose page tables are at top.
func (k *Kernel) userStrings(top int64, start, end uint64) ([]string, error) {
	if end < start || end > k.userTop() {
		return nil, fmt.Errorf("%w: area %#x-%#x", ErrHostile, start, end)
	}
	n := min(end-start, MaxArgBytes)
	b := make([]byte, n)
	for off := uint64(0); off < n; {
		va := start + off
		c := min(n-off, 4096-va&4095)
		pa, err := k.walkFrom(top, va)
		if err != nil {
			return nil, err
		}
		if _, err := k.Mem.ReadAt(b[off:off+c], pa); err != nil {
			return nil, err
		}
		off += c
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	var out []string
	for _, s := range bytes.Split(b, []byte{0}) {
		out = append(out, printable(s))
	}
	return out, nil
}
