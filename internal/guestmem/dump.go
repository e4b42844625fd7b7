package guestmem

import (
	"encoding/binary"
	"fmt"
)

// FormatError is a malformed dump: what is wrong, and where.
type FormatError struct {
	Format string
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s dump: at byte %d: %s", e.Format, e.Offset, e.Msg)
}

// MaxSegments bounds the ranges a dump may declare.
const MaxSegments = 1 << 16

// span returns data[off:off+n] or false when it does not fit (overflow-safe).
func span(data []byte, off, n uint64) ([]byte, bool) {
	if off > uint64(len(data)) || n > uint64(len(data))-off {
		return nil, false
	}
	return data[off : off+n], true
}

// parseELFCore reads the PT_LOAD segments of an ELF64 little-endian core,
// each at its physical address (p_paddr), as QMP dump-guest-memory writes
// them. Segments whose bytes are not in the file (p_filesz 0) are absent.
func parseELFCore(data []byte) ([]Segment, error) {
	bad := func(off int64, format string, a ...any) error {
		return &FormatError{Format: "elf", Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	if len(data) < 64 {
		return nil, bad(0, "header truncated (%d bytes)", len(data))
	}
	if data[4] != 2 || data[5] != 1 {
		return nil, bad(4, "only ELF64 little-endian cores are supported (class %d, data %d)", data[4], data[5])
	}
	le := binary.LittleEndian
	if t := le.Uint16(data[16:]); t != 4 {
		return nil, bad(16, "e_type %d is not ET_CORE", t)
	}
	phoff := le.Uint64(data[32:])
	phentsize := uint64(le.Uint16(data[54:]))
	phnum := uint64(le.Uint16(data[56:]))
	if phnum == 0xffff { // PN_XNUM: the real count is section 0's sh_info
		shoff := le.Uint64(data[40:])
		sh, ok := span(data, shoff, 64)
		if !ok {
			return nil, bad(40, "e_phnum is PN_XNUM but section header 0 at %d is outside the file", shoff)
		}
		phnum = uint64(le.Uint32(sh[44:]))
	}
	if phentsize < 56 {
		return nil, bad(54, "e_phentsize %d is too small", phentsize)
	}
	if phnum > MaxSegments {
		return nil, bad(56, "%d program headers (limit %d)", phnum, MaxSegments)
	}
	table, ok := span(data, phoff, phnum*phentsize)
	if !ok {
		return nil, bad(32, "program headers (%d at %d) run past the end of the file", phnum, phoff)
	}
	var segs []Segment
	for i := uint64(0); i < phnum; i++ {
		ph := table[i*phentsize:]
		at := int64(phoff + i*phentsize)
		if le.Uint32(ph) != 1 { // PT_LOAD
			continue
		}
		off, paddr, filesz := le.Uint64(ph[8:]), le.Uint64(ph[24:]), le.Uint64(ph[32:])
		if filesz == 0 {
			continue
		}
		b, ok := span(data, off, filesz)
		if !ok {
			return nil, bad(at, "PT_LOAD %d (%d bytes at %d) runs past the end of the file", i, filesz, off)
		}
		if paddr > 1<<52 || filesz > 1<<52 {
			return nil, bad(at, "PT_LOAD %d at physical %#x is outside the 52-bit physical space", i, paddr)
		}
		segs = append(segs, Segment{PA: int64(paddr), Data: b})
	}
	if len(segs) == 0 {
		return nil, bad(32, "no PT_LOAD segment with data")
	}
	return segs, nil
}

// limeMagic is "EMiL": 0x4C694D45 little-endian.
var limeMagic = [4]byte{'E', 'M', 'i', 'L'}

// parseLiME reads a LiME file: repeated 32-byte range headers (magic,
// version 1, first and last physical address, reserved), each followed by
// the range's bytes.
func parseLiME(data []byte) ([]Segment, error) {
	le := binary.LittleEndian
	var segs []Segment
	for off := uint64(0); off < uint64(len(data)); {
		h, ok := span(data, off, 32)
		if !ok {
			return nil, &FormatError{Format: "lime", Offset: int64(off), Msg: "range header truncated"}
		}
		if [4]byte(h[:4]) != limeMagic {
			return nil, &FormatError{Format: "lime", Offset: int64(off), Msg: fmt.Sprintf("bad magic % x", h[:4])}
		}
		if v := le.Uint32(h[4:]); v != 1 {
			return nil, &FormatError{Format: "lime", Offset: int64(off) + 4, Msg: fmt.Sprintf("version %d (only 1 is known)", v)}
		}
		start, end := le.Uint64(h[8:]), le.Uint64(h[16:])
		if end < start || start > 1<<52 || end > 1<<52 {
			return nil, &FormatError{Format: "lime", Offset: int64(off) + 8, Msg: fmt.Sprintf("bad range %#x-%#x", start, end)}
		}
		b, ok := span(data, off+32, end-start+1)
		if !ok {
			return nil, &FormatError{Format: "lime", Offset: int64(off) + 32, Msg: fmt.Sprintf("range %#x-%#x runs past the end of the file", start, end)}
		}
		if len(segs) == MaxSegments {
			return nil, &FormatError{Format: "lime", Offset: int64(off), Msg: fmt.Sprintf("more than %d ranges", MaxSegments)}
		}
		segs = append(segs, Segment{PA: int64(start), Data: b})
		off += 32 + uint64(len(b))
	}
	return segs, nil
}

// WriteLiME encodes segments as a LiME file (for tests and for converting
// dumps).
func WriteLiME(segs []Segment) []byte {
	var out []byte
	for _, s := range segs {
		if len(s.Data) == 0 {
			continue
		}
		var h [32]byte
		copy(h[:], limeMagic[:])
		binary.LittleEndian.PutUint32(h[4:], 1)
		binary.LittleEndian.PutUint64(h[8:], uint64(s.PA))
		binary.LittleEndian.PutUint64(h[16:], uint64(s.End()-1))
		out = append(append(out, h[:]...), s.Data...)
	}
	return out
}
