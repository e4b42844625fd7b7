package linuxkern

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// x86-64 page-table entry bits.
const (
	ptePresent  = 1 << 0
	ptePageSize = 1 << 7
	pteAddrMask = 0x000ffffffffff000 // bits 12-51
)

// ErrNotMapped is returned for a virtual address the guest's page tables do
// not map.
var ErrNotMapped = errors.New("not mapped")

// pageTables finds the kernel's top-level page table (init_top_pgt, the one
// every process shares for kernel space) and the paging depth, 4 or 5 levels
// (VMCOREINFO's NUMBER(pgtable_l5_enabled)). The VMCOREINFO symbol is
// believed only if kallsyms agrees.
func (k *Kernel) pageTables() error {
	sym, ok := k.Syms.Lookup("init_top_pgt")
	if !ok {
		return errors.New("page tables: no init_top_pgt symbol")
	}
	if v, ok := k.Info.Symbols["init_top_pgt"]; ok && v != sym.Addr {
		return fmt.Errorf("page tables: VMCOREINFO says init_top_pgt is %#x, kallsyms %#x", v, sym.Addr)
	}
	pa, err := k.Info.KernelPA(sym.Addr)
	if err != nil {
		return fmt.Errorf("page tables: %w", err)
	}
	k.TopPGT = pa
	k.Levels = 4
	switch k.Info.Numbers["pgtable_l5_enabled"] {
	case 0:
	case 1:
		k.Levels = 5
	default:
		return fmt.Errorf("page tables: pgtable_l5_enabled = %d", k.Info.Numbers["pgtable_l5_enabled"])
	}
	return nil
}

// Walk translates a kernel virtual address through the guest's own page
// tables (4- or 5-level, with 1 GiB and 2 MiB pages). Every entry is read
// from guest memory and bounds-checked: a hostile table ends in an error.
func (k *Kernel) Walk(va uint64) (int64, error) { return k.walkFrom(k.TopPGT, va) }

// walkFrom translates va through the page tables whose top level is at
// physical address top (the kernel's, or a process's mm->pgd).
func (k *Kernel) walkFrom(top int64, va uint64) (int64, error) {
	if k.Levels == 0 {
		return 0, errors.New("page tables not recovered")
	}
	bits := uint(12 + 9*k.Levels) // 48 or 57
	if top := int64(va) >> (bits - 1); top != -1 && top != 0 {
		return 0, fmt.Errorf("%#x is not canonical for %d-level paging", va, k.Levels)
	}
	table := uint64(top)
	var b [8]byte
	for level := k.Levels; level >= 1; level-- {
		shift := uint(12 + 9*(level-1))
		idx := (va >> shift) & 511
		if _, err := k.Mem.ReadAt(b[:], int64(table+idx*8)); err != nil {
			return 0, fmt.Errorf("page table level %d at %#x: %w", level, table, err)
		}
		e := binary.LittleEndian.Uint64(b[:])
		if e&ptePresent == 0 {
			return 0, fmt.Errorf("%#x: %w (level %d)", va, ErrNotMapped, level)
		}
		if level <= 3 && level >= 2 && e&ptePageSize != 0 { // 1 GiB or 2 MiB page
			size := uint64(1) << shift
			return int64(e&pteAddrMask&^(size-1) | va&(size-1)), nil
		}
		table = e & pteAddrMask
	}
	return int64(table | va&0xfff), nil
}
