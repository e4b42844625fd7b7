package guestmem

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// elfCore builds a minimal ELF64 core with one PT_LOAD per segment.
func elfCore(segs []Segment) []byte {
	le := binary.LittleEndian
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	le.PutUint16(h[16:], 4)  // ET_CORE
	le.PutUint16(h[18:], 62) // x86-64
	le.PutUint64(h[32:], 64) // phoff
	le.PutUint16(h[52:], 8)  // e_ehsize as QEMU writes it
	le.PutUint16(h[54:], 56)
	le.PutUint16(h[56:], uint16(len(segs)+1))
	note := make([]byte, 56)
	le.PutUint32(note, 4) // PT_NOTE, ignored
	out := append(h, note...)
	off := uint64(64 + 56*(len(segs)+1))
	var data []byte
	for _, s := range segs {
		ph := make([]byte, 56)
		le.PutUint32(ph, 1)
		le.PutUint64(ph[8:], off)
		le.PutUint64(ph[24:], uint64(s.PA))
		le.PutUint64(ph[32:], uint64(len(s.Data)))
		le.PutUint64(ph[40:], uint64(len(s.Data)))
		out = append(out, ph...)
		data = append(data, s.Data...)
		off += uint64(len(s.Data))
	}
	return append(out, data...)
}

func TestDumpFormats(t *testing.T) {
	segs := []Segment{{PA: 0x100000, Data: bytes.Repeat([]byte("b"), 4096)}, {PA: 0, Data: bytes.Repeat([]byte("a"), 4096)}}
	for name, dump := range map[string][]byte{"elf": elfCore(segs), "lime": WriteLiME(segs)} {
		m, err := FromBytes(dump)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m.Format != name || len(m.Segments()) != 2 || m.RAM() != 8192 || m.Size() != 0x101000 {
			t.Fatalf("%s: %+v", name, m)
		}
		b := make([]byte, 2)
		if _, err := m.ReadAt(b[:1], 0xfff); err != nil || b[0] != 'a' {
			t.Fatalf("%s: %q %v", name, b, err)
		}
		// Across the gap: the present byte, then ErrNotPresent.
		if n, err := m.ReadAt(b, 0xfff); n != 1 || !errors.Is(err, ErrNotPresent) {
			t.Fatalf("%s: gap read %d %v", name, n, err)
		}
		if _, err := m.ReadAt(b, 0x100000); err != nil || string(b) != "bb" {
			t.Fatalf("%s: %q %v", name, b, err)
		}
		if i := m.Index([]byte("bb"), 0); i != 0x100000 {
			t.Fatalf("%s: index %#x", name, i)
		}
	}
	raw, err := FromBytes([]byte("plain bytes"))
	if err != nil || raw.Format != "raw" || raw.Size() != 11 {
		t.Fatalf("raw: %v %+v", err, raw)
	}
}

func TestMalformedDumps(t *testing.T) {
	good := elfCore([]Segment{{PA: 0, Data: make([]byte, 4096)}})
	lime := WriteLiME([]Segment{{PA: 0, Data: make([]byte, 4096)}})
	cut := func(b []byte, n int) []byte { return append([]byte(nil), b[:n]...) }
	set := func(b []byte, off int, v uint64) []byte {
		c := append([]byte(nil), b...)
		binary.LittleEndian.PutUint64(c[off:], v)
		return c
	}
	overlap := WriteLiME([]Segment{{PA: 0, Data: make([]byte, 4096)}, {PA: 100, Data: make([]byte, 10)}})
	for name, tc := range map[string]struct {
		dump []byte
		want string
	}{
		"elf header cut":      {cut(good, 40), "header truncated"},
		"elf32":               {append([]byte("\x7fELF\x01"), make([]byte, 80)...), "only ELF64"},
		"elf phdrs past end":  {set(good, 32, 1<<40), "program headers"},
		"elf segment too big": {set(good, 64+56+32, 1<<40), "runs past the end"},
		"elf segment at 2^60": {set(good, 64+56+24, 1<<60), "52-bit"},
		"lime cut":            {cut(lime, 100), "runs past the end"},
		"lime header cut":     {append(append([]byte(nil), lime...), "EMiL"...), "header truncated"},
		"lime version":        {set(lime, 4, 2), "version"},
		"lime reversed":       {set(lime, 8, 0x5000), "bad range"},
		"lime overlap":        {overlap, "overlap"},
	} {
		_, err := FromBytes(tc.dump)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzFromBytes(f *testing.F) {
	f.Add(elfCore([]Segment{{PA: 0, Data: make([]byte, 64)}}))
	f.Add(WriteLiME([]Segment{{PA: 4096, Data: make([]byte, 64)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := FromBytes(b)
		if err != nil {
			return
		}
		// Whatever parsed must read back within bounds.
		buf := make([]byte, 16)
		for _, s := range m.Segments() {
			m.ReadAt(buf, s.PA)
			m.ReadAt(buf, s.End()-1)
		}
		m.Index([]byte{0}, 0)
	})
}

// TestPCLayout: guests below 3.5 GiB are one range from 0; bigger ones have
// 3 GiB below the PCI hole and the rest from 4 GiB (QEMU's pc machine).
func TestPCLayout(t *testing.T) {
	for n, want := range map[int64][][3]int64{
		512 << 20:         {{0, 0, 512 << 20}},
		0xe0000000 - 4096: {{0, 0, 0xe0000000 - 4096}},
		4 << 30:           {{0, 0, 3 << 30}, {4 << 30, 3 << 30, 1 << 30}},
		0xe0000000:        {{0, 0, 3 << 30}, {4 << 30, 3 << 30, 0xe0000000 - 3<<30}},
	} {
		got := pcRanges(n)
		if len(got) != len(want) {
			t.Fatalf("%d: %v, want %v", n, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%d: %v, want %v", n, got, want)
			}
		}
	}
}
