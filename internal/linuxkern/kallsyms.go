package linuxkern

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Symbol is one kallsyms entry.
type Symbol struct {
	Name string
	Type byte // 'T', 't', 'D', ...
	Addr uint64
}

// Kallsyms is the guest kernel's own symbol table.
type Kallsyms struct {
	Syms   []Symbol
	byName map[string]int
	byAddr []int // indices of Syms in address order
}

// Limits on what the guest can make us read.
const (
	MaxSyms       = 1 << 21
	MaxNamesBytes = 16 << 20
	maxSymLen     = 1024
)

var errKallsyms = errors.New("kallsyms")

// ReadKallsyms decodes the kernel's compressed symbol table (the 6.1
// layout: base-relative offsets with absolute per-CPU symbols, token table
// and index, one- or two-byte name lengths) at the addresses VMCOREINFO
// gives, and cross-checks the result against VMCOREINFO's own symbols.
func ReadKallsyms(mem io.ReaderAt, vi *VMCoreInfo) (*Kallsyms, error) {
	addr := func(name string) (int64, error) {
		va, ok := vi.Symbols[name]
		if !ok {
			return 0, fmt.Errorf("%w: VMCOREINFO lacks %s", errKallsyms, name)
		}
		return vi.KernelPA(va)
	}
	read := func(name string, n int) ([]byte, error) {
		pa, err := addr(name)
		if err != nil {
			return nil, err
		}
		b := make([]byte, n)
		if _, err := mem.ReadAt(b, pa); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: read %s: %v", errKallsyms, name, err)
		}
		return b, nil
	}
	b, err := read("kallsyms_num_syms", 4)
	if err != nil {
		return nil, err
	}
	num := int(binary.LittleEndian.Uint32(b))
	if num <= 0 || num > MaxSyms {
		return nil, fmt.Errorf("%w: %d symbols is implausible", errKallsyms, num)
	}
	if b, err = read("kallsyms_relative_base", 8); err != nil {
		return nil, err
	}
	relBase := binary.LittleEndian.Uint64(b)
	offs, err := read("kallsyms_offsets", 4*num)
	if err != nil {
		return nil, err
	}
	idx, err := read("kallsyms_token_index", 512)
	if err != nil {
		return nil, err
	}
	maxTok := 0
	for i := 0; i < 256; i++ {
		maxTok = max(maxTok, int(binary.LittleEndian.Uint16(idx[2*i:])))
	}
	table, err := read("kallsyms_token_table", maxTok+256)
	if err != nil {
		return nil, err
	}
	tokens := make([]string, 256)
	for i := 0; i < 256; i++ {
		o := int(binary.LittleEndian.Uint16(idx[2*i:]))
		end := o
		for end < len(table) && table[end] != 0 && end-o < 256 {
			end++
		}
		tokens[i] = string(table[o:end])
	}
	namesVA, tokVA := vi.Symbols["kallsyms_names"], vi.Symbols["kallsyms_token_table"]
	if tokVA <= namesVA || tokVA-namesVA > MaxNamesBytes {
		return nil, fmt.Errorf("%w: names region %#x..%#x is implausible", errKallsyms, namesVA, tokVA)
	}
	names, err := read("kallsyms_names", int(tokVA-namesVA))
	if err != nil {
		return nil, err
	}
	k := &Kallsyms{Syms: make([]Symbol, 0, num), byName: make(map[string]int, num)}
	err = DecodeNames(names, num, tokens, func(i int, typ byte, name string) {
		off := int32(binary.LittleEndian.Uint32(offs[4*i:]))
		var a uint64
		if off >= 0 {
			a = uint64(off) // absolute (per-CPU)
		} else {
			a = relBase - 1 - uint64(int64(off))
		}
		k.byName[name] = len(k.Syms)
		k.Syms = append(k.Syms, Symbol{Name: name, Type: typ, Addr: a})
	})
	if err != nil {
		return nil, err
	}
	k.index()
	// Believe nothing the guest wrote until both sources agree.
	checked := 0
	for _, name := range []string{"_stext", "init_uts_ns", "init_top_pgt", "swapper_pg_dir"} {
		want, ok := vi.Symbols[name]
		if !ok {
			continue
		}
		s, ok := k.Lookup(name)
		if !ok {
			continue // an alias VMCOREINFO names but kallsyms does not (swapper_pg_dir)
		}
		if s.Addr != want {
			return nil, fmt.Errorf("%w: %s is %#x in kallsyms but %#x in VMCOREINFO", errKallsyms, name, s.Addr, want)
		}
		checked++
	}
	if checked < 2 {
		return nil, fmt.Errorf("%w: fewer than 2 symbols to cross-check against VMCOREINFO", errKallsyms)
	}
	return k, nil
}

// DecodeNames walks num compressed names, calling fn with each symbol's
// index, type and name. Entries start with a length (one byte, or two when
// the first has its high bit set), followed by that many token indices.
func DecodeNames(b []byte, num int, tokens []string, fn func(i int, typ byte, name string)) error {
	if len(tokens) != 256 {
		return fmt.Errorf("%w: %d tokens", errKallsyms, len(tokens))
	}
	buf := make([]byte, 0, 256)
	p := 0
	for i := 0; i < num; i++ {
		if p >= len(b) {
			return fmt.Errorf("%w: names end after %d of %d symbols", errKallsyms, i, num)
		}
		n := int(b[p])
		p++
		if n&0x80 != 0 {
			if p >= len(b) {
				return fmt.Errorf("%w: truncated length of symbol %d", errKallsyms, i)
			}
			n = n&0x7f | int(b[p])<<7
			p++
		}
		if n == 0 || n > maxSymLen || p+n > len(b) {
			return fmt.Errorf("%w: symbol %d has length %d", errKallsyms, i, n)
		}
		buf = buf[:0]
		for _, t := range b[p : p+n] {
			buf = append(buf, tokens[t]...)
		}
		p += n
		if len(buf) < 2 {
			return fmt.Errorf("%w: symbol %d decodes to %q", errKallsyms, i, buf)
		}
		for _, c := range buf {
			if c < 0x21 || c > 0x7e {
				return fmt.Errorf("%w: symbol %d is not printable", errKallsyms, i)
			}
		}
		fn(i, buf[0], string(buf[1:]))
	}
	return nil
}

// Lookup finds a symbol by name.
func (k *Kallsyms) Lookup(name string) (Symbol, bool) {
	i, ok := k.byName[name]
	if !ok {
		return Symbol{}, false
	}
	return k.Syms[i], true
}

// Nearest returns the symbol at or below addr (for naming addresses).
func (k *Kallsyms) Nearest(addr uint64) (Symbol, bool) {
	i := sort.Search(len(k.byAddr), func(i int) bool { return k.Syms[k.byAddr[i]].Addr > addr })
	if i == 0 {
		return Symbol{}, false
	}
	return k.Syms[k.byAddr[i-1]], true
}

// End is where the symbol at addr ends: the next higher symbol's address
// (kallsyms has no sizes). ok is false for the last symbol.
func (k *Kallsyms) End(addr uint64) (uint64, bool) {
	i := sort.Search(len(k.byAddr), func(i int) bool { return k.Syms[k.byAddr[i]].Addr > addr })
	if i == len(k.byAddr) {
		return 0, false
	}
	return k.Syms[k.byAddr[i]].Addr, true
}

// index orders the symbols by address for Nearest and End.
func (k *Kallsyms) index() {
	k.byAddr = make([]int, len(k.Syms))
	for i := range k.byAddr {
		k.byAddr[i] = i
	}
	sort.SliceStable(k.byAddr, func(a, b int) bool { return k.Syms[k.byAddr[a]].Addr < k.Syms[k.byAddr[b]].Addr })
}
