package elfreloc

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Symbols are the target's symbol values by name (the guest kernel's,
// from kallsyms).
type Symbols map[string]uint64

// maxSymbolLines bounds a symbol file.
const maxSymbolLines = 4 << 20

// ParseSymbols reads symbols in nm format, one "ADDR TYPE NAME" per line
// as /proc/kallsyms prints them (a trailing "[module]" is allowed). A name
// seen twice keeps its first value, as the kernel's own lookup does.
func ParseSymbols(r io.Reader) (Symbols, error) {
	out := Symbols{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if n > maxSymbolLines {
			return nil, fmt.Errorf("symbols: more than %d lines", maxSymbolLines)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f) > 4 || len(f[1]) != 1 || (len(f) == 4 && !strings.HasPrefix(f[3], "[")) {
			return nil, fmt.Errorf("symbols line %d: want ADDR TYPE NAME: %q", n, line)
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("symbols line %d: address %q: %w", n, f[0], err)
		}
		if _, seen := out[f[2]]; !seen {
			out[f[2]] = addr
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("symbols: %w", err)
	}
	return out, nil
}

// Section is one allocatable section of the object, laid out.
type Section struct {
	Name  string `json:"name"`
	Addr  uint64 `json:"addr"`
	Size  uint64 `json:"size"`
	Align uint64 `json:"align"`
	// Data is the section's final bytes (zeros for .bss-like sections).
	Data []byte `json:"-"`
	Exec bool   `json:"exec,omitempty"`
	// Write: the section is writable.
	Write bool `json:"write,omitempty"`
}

// Image is a relocated object: its allocatable sections at their final
// addresses, in the object's section order, and the addresses of the
// object's own global symbols.
type Image struct {
	Base     uint64            `json:"base"`
	Size     uint64            `json:"size"` // from Base to the end of the last section
	Sections []Section         `json:"sections"`
	Symbols  map[string]uint64 `json:"symbols"`
}

// Section returns the section named name.
func (im *Image) Section(name string) (Section, bool) {
	for _, s := range im.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return Section{}, false
}

// Limits on what an object may ask for.
const (
	maxObject   = 64 << 20
	maxImage    = 256 << 20
	maxSections = 4096
	maxAlign    = 1 << 20
)

// Relocate lays out the allocatable sections of an x86-64 ELF
// relocatable object from base (each at its alignment, in the object's
// order), resolves its undefined symbols against syms, and applies its
// relocations: R_X86_64_64, _32, _32S, _PC32, _PLT32 (a direct call:
// there is no PLT) and _PC64, checking that 32-bit results fit. Any other
// relocation type, an undefined symbol syms lacks, or a COMMON symbol is
// an error. The object is untrusted input: every offset is checked.
func Relocate(obj []byte, base uint64, syms Symbols) (*Image, error) {
	if len(obj) > maxObject {
		return nil, errors.New("object too large")
	}
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_REL || f.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("object: want an x86-64 little-endian relocatable (ELF64 ET_REL), got %v %v %v", f.Class, f.Machine, f.Type)
	}
	if len(f.Sections) > maxSections {
		return nil, errors.New("object: too many sections")
	}
	im := &Image{Base: base, Symbols: map[string]uint64{}}
	addr := map[int]uint64{} // section index -> address
	index := map[int]int{}   // section index -> im.Sections index
	at := base
	for i, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_GROUP {
			continue
		}
		if s.Size == 0 {
			addr[i] = at // symbols may still point here; nothing to load
			continue
		}
		align := max(s.Addralign, 1)
		if align > maxAlign || align&(align-1) != 0 {
			return nil, fmt.Errorf("section %s: alignment %d", s.Name, s.Addralign)
		}
		if at > math.MaxUint64-align || s.Size > maxImage {
			return nil, fmt.Errorf("section %s: does not fit", s.Name)
		}
		at = (at + align - 1) &^ (align - 1)
		if at-base+s.Size > maxImage || at > math.MaxUint64-s.Size {
			return nil, fmt.Errorf("section %s: image larger than %d bytes", s.Name, maxImage)
		}
		sec := Section{Name: s.Name, Addr: at, Size: s.Size, Align: align,
			Exec: s.Flags&elf.SHF_EXECINSTR != 0, Write: s.Flags&elf.SHF_WRITE != 0}
		if s.Type == elf.SHT_NOBITS {
			sec.Data = make([]byte, s.Size)
		} else {
			if s.Offset > uint64(len(obj)) || s.Size > uint64(len(obj))-s.Offset {
				return nil, fmt.Errorf("section %s: outside the object", s.Name)
			}
			sec.Data = slices.Clone(obj[s.Offset : s.Offset+s.Size])
		}
		addr[i], index[i] = at, len(im.Sections)
		im.Sections = append(im.Sections, sec)
		at += s.Size
	}
	if len(im.Sections) == 0 {
		return nil, errors.New("object: no allocatable section")
	}
	im.Size = at - base
	symtab, err := f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("object: symbols: %w", err)
	}
	// value[k] is symbol k+1's address (debug/elf drops the null symbol).
	value := make([]uint64, len(symtab))
	var missing []string
	for k, s := range symtab {
		switch {
		case s.Section == elf.SHN_UNDEF:
			if s.Name == "" {
				continue
			}
			v, ok := syms[s.Name]
			if !ok {
				if elf.ST_BIND(s.Info) != elf.STB_WEAK {
					missing = append(missing, s.Name)
				}
				continue // a weak undefined symbol is 0
			}
			value[k] = v
		case s.Section == elf.SHN_ABS:
			value[k] = s.Value
		case s.Section == elf.SHN_COMMON:
			return nil, fmt.Errorf("symbol %s is COMMON (compile with -fno-common)", s.Name)
		case s.Section >= elf.SHN_LORESERVE:
			return nil, fmt.Errorf("symbol %s: section index %#x", s.Name, uint16(s.Section))
		default:
			a, ok := addr[int(s.Section)]
			if !ok {
				continue // in a section that is not loaded (debug info)
			}
			value[k] = a + s.Value
			if s.Name != "" && elf.ST_TYPE(s.Info) != elf.STT_SECTION && elf.ST_BIND(s.Info) != elf.STB_LOCAL {
				im.Symbols[s.Name] = value[k]
			}
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		missing = slices.Compact(missing)
		return nil, fmt.Errorf("undefined symbols the target lacks: %s", strings.Join(missing, ", "))
	}
	for _, rs := range f.Sections {
		if rs.Type == elf.SHT_REL {
			if _, ok := index[int(rs.Info)]; ok {
				return nil, fmt.Errorf("section %s: REL relocations (x86-64 objects use RELA)", rs.Name)
			}
			continue
		}
		if rs.Type != elf.SHT_RELA {
			continue
		}
		ti, ok := index[int(rs.Info)]
		if !ok {
			continue // relocations of a section that is not loaded
		}
		if rs.Offset > uint64(len(obj)) || rs.Size > uint64(len(obj))-rs.Offset || rs.Size%24 != 0 {
			return nil, fmt.Errorf("section %s: malformed", rs.Name)
		}
		if err := apply(&im.Sections[ti], obj[rs.Offset:rs.Offset+rs.Size], value, symtab); err != nil {
			return nil, fmt.Errorf("%s: %w", rs.Name, err)
		}
	}
	return im, nil
}

// apply applies one section's RELA entries to its target.
func apply(t *Section, relas []byte, value []uint64, symtab []elf.Symbol) error {
	le := binary.LittleEndian
	for len(relas) > 0 {
		off, info, addend := le.Uint64(relas), le.Uint64(relas[8:]), int64(le.Uint64(relas[16:]))
		relas = relas[24:]
		typ, si := elf.R_X86_64(elf.R_TYPE64(info)), elf.R_SYM64(info)
		if typ == elf.R_X86_64_NONE {
			continue
		}
		var s uint64
		name := "(none)"
		if si != 0 {
			if int(si) > len(value) {
				return fmt.Errorf("relocation at %#x: symbol %d does not exist", off, si)
			}
			s, name = value[si-1], symtab[si-1].Name
		}
		p := t.Addr + off
		width := uint64(4)
		if typ == elf.R_X86_64_64 || typ == elf.R_X86_64_PC64 {
			width = 8
		}
		if off > t.Size || width > t.Size-off || uint64(len(t.Data)) != t.Size {
			return fmt.Errorf("relocation at %#x outside %s", off, t.Name)
		}
		v := s + uint64(addend) // S + A, modulo 2^64
		switch typ {
		case elf.R_X86_64_64:
			le.PutUint64(t.Data[off:], v)
		case elf.R_X86_64_PC64:
			le.PutUint64(t.Data[off:], v-p)
		case elf.R_X86_64_32:
			if v > math.MaxUint32 {
				return fmt.Errorf("R_X86_64_32 of %s at %s+%#x: %#x does not fit in 32 bits (zero-extended)", name, t.Name, off, v)
			}
			le.PutUint32(t.Data[off:], uint32(v))
		case elf.R_X86_64_32S:
			if int64(v) != int64(int32(v)) {
				return fmt.Errorf("R_X86_64_32S of %s at %s+%#x: %#x does not fit in 32 bits (sign-extended)", name, t.Name, off, v)
			}
			le.PutUint32(t.Data[off:], uint32(v))
		case elf.R_X86_64_PC32, elf.R_X86_64_PLT32:
			d := v - p
			if int64(d) != int64(int32(d)) {
				return fmt.Errorf("%v of %s at %s+%#x: displacement %#x does not fit in 32 bits (signed)", typ, name, t.Name, off, d)
			}
			le.PutUint32(t.Data[off:], uint32(d))
		default:
			return fmt.Errorf("relocation %v of %s at %s+%#x is not supported", typ, name, t.Name, off)
		}
	}
	return nil
}

// KernelCFlags build an object the way the engine and the guest kernel
// expect (gcc, with -o OUT SOURCE after them): the kernel code model, no
// SSE or x87 (the kernel saves no such state for it), no unwind tables,
// no merged constants, no COMMON symbols, no stack protector or CET.
var KernelCFlags = []string{"-c", "-O2", "-mcmodel=kernel", "-mgeneral-regs-only", "-fno-pic", "-fno-pie", "-mno-red-zone",
	"-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-merge-constants",
	"-fno-common", "-fcf-protection=none", "-nostdinc"}
