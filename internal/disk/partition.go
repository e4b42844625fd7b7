package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// Partition is one entry of a partition table.
type Partition struct {
	Index  int    `json:"index"` // 1-based, as the guest numbers them
	Start  int64  `json:"start"` // bytes from the start of the disk
	Size   int64  `json:"size"`
	Type   string `json:"type"` // MBR type byte as hex, or GPT type GUID
	Name   string `json:"name,omitempty"`
	Scheme string `json:"scheme"` // mbr or gpt
}

// Section returns the partition as a reader of its own.
func (p Partition) Section(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, p.Start, p.Size)
}

const sector = 512

// MaxGPTEntries bounds a GPT.
const MaxGPTEntries = 1024

// Partitions reads an MBR or GPT partition table. A disk without one
// (a file system on the whole disk) gives no partitions and no error.
func Partitions(r io.ReaderAt, size int64) ([]Partition, error) {
	var mbr [sector]byte
	if n, _ := r.ReadAt(mbr[:], 0); n < sector || mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil, nil
	}
	le := binary.LittleEndian
	var out []Partition
	protective := false
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		typ := e[4]
		start, count := int64(le.Uint32(e[8:]))*sector, int64(le.Uint32(e[12:]))*sector
		if typ == 0 || count == 0 {
			continue
		}
		if typ == 0xee {
			protective = true
			continue
		}
		if start+count > size {
			return nil, &FormatError{Format: "mbr", Offset: int64(446 + 16*i), Msg: fmt.Sprintf("partition %d (%d bytes at %d) runs past the disk (%d)", i+1, count, start, size)}
		}
		out = append(out, Partition{Index: i + 1, Start: start, Size: count, Type: fmt.Sprintf("%#02x", typ), Scheme: "mbr"})
	}
	if !protective {
		// A boot sector that is a file system (FAT, NTFS) also ends in
		// 55 aa: such a "table" with no valid entry is no table.
		return out, nil
	}
	return gpt(r, size)
}

func gpt(r io.ReaderAt, size int64) ([]Partition, error) {
	bad := func(off int64, format string, a ...any) error {
		return &FormatError{Format: "gpt", Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	var h [sector]byte
	if n, _ := r.ReadAt(h[:], sector); n < sector || !bytes.Equal(h[:8], []byte("EFI PART")) {
		return nil, bad(sector, "protective MBR but no GPT header")
	}
	le := binary.LittleEndian
	hsize := le.Uint32(h[12:])
	if hsize < 92 || hsize > sector {
		return nil, bad(sector+12, "header size %d", hsize)
	}
	crc := le.Uint32(h[16:])
	hc := append([]byte(nil), h[:hsize]...)
	clear(hc[16:20])
	if crc32.ChecksumIEEE(hc) != crc {
		return nil, bad(sector+16, "header CRC mismatch")
	}
	entLBA, num, esize := int64(le.Uint64(h[72:])), le.Uint32(h[80:]), le.Uint32(h[84:])
	if num > MaxGPTEntries || esize < 128 || esize > 1024 || esize%8 != 0 {
		return nil, bad(sector+80, "%d entries of %d bytes", num, esize)
	}
	table := make([]byte, int(num)*int(esize))
	if entLBA < 2 || entLBA*sector >= size {
		return nil, bad(sector+72, "entries at LBA %d", entLBA)
	}
	if n, _ := r.ReadAt(table, entLBA*sector); n < len(table) {
		return nil, bad(entLBA*sector, "partition entries run past the disk")
	}
	if crc32.ChecksumIEEE(table) != le.Uint32(h[88:]) {
		return nil, bad(sector+88, "partition entries CRC mismatch")
	}
	var out []Partition
	for i := 0; i < int(num); i++ {
		e := table[i*int(esize):]
		if allZero(e[:16]) {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		if first < 0 || last < first || (last+1)*sector > size {
			return nil, bad(entLBA*sector+int64(i)*int64(esize), "partition %d spans LBA %d-%d past the disk", i+1, first, last)
		}
		name := make([]uint16, 36)
		for j := range name {
			name[j] = le.Uint16(e[56+2*j:])
		}
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		out = append(out, Partition{Index: i + 1, Start: first * sector, Size: (last - first + 1) * sector,
			Type: guid(e[:16]), Name: string(utf16.Decode(name)), Scheme: "gpt"})
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guid formats a GPT mixed-endian GUID.
func guid(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}
