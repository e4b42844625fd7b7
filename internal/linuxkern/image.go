package linuxkern

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/xi2/xz"
)

// Image is the guest kernel's own image (its vmlinuz, unpacked): the code
// and read-only data as linked, the boot-time relocation table, and the
// lists of places the kernel patches while it boots — what the running
// kernel is compared with.
type Image struct {
	Text, Rodata segment
	// Boot-time patch sites, as link addresses: [addr, addr+len) may
	// differ from the image in a healthy kernel.
	patches []span
	// alt is the .altinstructions section, read with the running
	// kernel's struct alt_instr layout (it changed in 6.3).
	alt segment
	// Relocations the boot code applies (link addresses of the fields).
	rel32, rel32neg, rel64 []uint64
}

type segment struct {
	Addr uint64
	Data []byte
}

type span struct{ at, n uint64 }

// Bounds on what an image may unpack to.
const (
	MaxVmlinuz = 128 << 20
	MaxVmlinux = 512 << 20
)

// ErrNotImage is returned for a file that holds no kernel this can read.
var ErrNotImage = errors.New("not a kernel image")

// LoadImage unpacks a bzImage (an XZ- or gzip-compressed vmlinux, as
// Debian builds them) or takes a vmlinux ELF as it is.
func LoadImage(b []byte) (*Image, error) {
	if len(b) > MaxVmlinuz && !bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotImage, len(b))
	}
	raw := b
	if !bytes.HasPrefix(b, []byte(elf.ELFMAG)) {
		var err error
		if raw, err = unpack(b); err != nil {
			return nil, err
		}
	}
	return parseVmlinux(raw)
}

// unpack finds the compressed vmlinux in a bzImage (the setup header's
// payload_offset and payload_length) and decompresses it: gzip, XZ (with
// the kernel's BCJ x86 filter), zstd or LZ4 (the kernel's legacy frames).
func unpack(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(b) < 0x250 || le.Uint32(b[0x202:]) != 0x53726448 { // "HdrS"
		return nil, fmt.Errorf("%w: no bzImage setup header", ErrNotImage)
	}
	setup := int(b[0x1f1])
	if setup == 0 {
		setup = 4
	}
	off := uint64(setup+1)*512 + uint64(le.Uint32(b[0x248:]))
	n := uint64(le.Uint32(b[0x24c:]))
	if off+n > uint64(len(b)) || n < 4 {
		return nil, fmt.Errorf("%w: payload at %d+%d outside the file", ErrNotImage, off, n)
	}
	p := b[off : off+n]
	var r io.Reader
	var err error
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		var gr *gzip.Reader
		if gr, err = gzip.NewReader(bytes.NewReader(p)); err == nil {
			gr.Multistream(false)
			r = gr
		}
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		var xr *xz.Reader // XZ Embedded's port: the kernel's BCJ x86 filter
		if xr, err = xz.NewReader(bytes.NewReader(p), 0); err == nil {
			xr.Multistream(false) // the payload ends with the 4-byte size the build appends
			r = xr
		}
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var zr *zstd.Decoder
		// Without the 4-byte size the build appends: the decoder would
		// take it for a next frame.
		if zr, err = zstd.NewReader(bytes.NewReader(p[:len(p)-4]), zstd.WithDecoderMaxMemory(MaxVmlinux), zstd.WithDecoderConcurrency(1)); err == nil {
			defer zr.Close()
			r = zr
		}
	case bytes.HasPrefix(p, []byte{0x02, 0x21, 0x4c, 0x18}):
		return lz4Legacy(p[4:])
	default:
		return nil, fmt.Errorf("%w: payload compressed in a way not read here (% x)", ErrNotImage, p[:4])
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	out, err := io.ReadAll(io.LimitReader(r, MaxVmlinux+1))
	if len(out) > MaxVmlinux {
		return nil, fmt.Errorf("%w: unpacks to more than %d bytes", ErrNotImage, MaxVmlinux)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	return out, nil
}

// lz4Legacy decodes LZ4's legacy frames (lz4 -l, as the kernel builds
// them): blocks of at most 8 MiB, each after its 32-bit compressed size,
// until the input ends.
func lz4Legacy(p []byte) ([]byte, error) {
	const block = 8 << 20
	var out []byte
	buf := make([]byte, block)
	for len(p) >= 4 {
		n := binary.LittleEndian.Uint32(p)
		if n == 0x184c2102 { // a new frame's magic
			p = p[4:]
			continue
		}
		if uint64(n) > uint64(len(p)-4) || n > block+block/255+16 {
			break // the payload's end (the size field then holds trailing data)
		}
		m, err := lz4.UncompressBlock(p[4:4+n], buf)
		if err != nil {
			return nil, fmt.Errorf("%w: lz4: %v", ErrNotImage, err)
		}
		if len(out)+m > MaxVmlinux {
			return nil, fmt.Errorf("%w: unpacks to more than %d bytes", ErrNotImage, MaxVmlinux)
		}
		out = append(out, buf[:m]...)
		p = p[4+n:]
	}
	if !bytes.HasPrefix(out, []byte(elf.ELFMAG)) {
		return nil, fmt.Errorf("%w: lz4 payload is not an ELF file", ErrNotImage)
	}
	return out, nil
}

// parseVmlinux reads the sections the comparison needs and the relocation
// table the kernel's build appends to vmlinux.bin (read from the end:
// 32-bit, then inverse 32-bit, then 64-bit relocations, each list ended
// by a zero word).
func parseVmlinux(raw []byte) (*Image, error) {
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotImage, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: not an x86-64 kernel", ErrNotImage)
	}
	im := &Image{}
	sec := func(name string) (*elf.Section, []byte, error) {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			return nil, nil, nil
		}
		if s.Size > MaxVmlinux {
			return nil, nil, fmt.Errorf("%w: section %s of %d bytes", ErrNotImage, name, s.Size)
		}
		d, err := s.Data()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: section %s: %v", ErrNotImage, name, err)
		}
		return s, d, nil
	}
	for _, p := range []struct {
		name string
		into *segment
	}{{".text", &im.Text}, {".rodata", &im.Rodata}} {
		s, d, err := sec(p.name)
		if err != nil {
			return nil, err
		}
		if s == nil {
			return nil, fmt.Errorf("%w: no %s", ErrNotImage, p.name)
		}
		*p.into = segment{Addr: s.Addr, Data: d}
	}
	// Patch sites: each list's entries point at the sites relative to
	// themselves (s32), except paravirt's absolute pointers.
	rel := func(name string, size int, width func(e []byte) uint64) error {
		s, d, err := sec(name)
		if err != nil || s == nil {
			return err
		}
		for off := 0; off+size <= len(d); off += size {
			at := s.Addr + uint64(off) + uint64(int64(int32(binary.LittleEndian.Uint32(d[off:]))))
			im.patches = append(im.patches, span{at, width(d[off : off+size])})
		}
		return nil
	}
	if s, d, err := sec(".altinstructions"); err != nil {
		return nil, err
	} else if s != nil {
		im.alt = segment{Addr: s.Addr, Data: d}
	}
	// Runtime constants (6.10+): immediates the boot writes, in sections
	// named runtime_ptr_<name> (8-byte) and runtime_shift_<name> (1-byte).
	for _, x := range f.Sections {
		width := uint64(0)
		switch {
		case strings.HasPrefix(x.Name, "runtime_ptr_"):
			width = 8
		case strings.HasPrefix(x.Name, "runtime_shift_"):
			width = 1
		default:
			continue
		}
		if err := rel(x.Name, 4, func([]byte) uint64 { return width }); err != nil {
			return nil, err
		}
	}
	if err := rel(".retpoline_sites", 4, func([]byte) uint64 { return 6 }); err != nil {
		return nil, err
	}
	if err := rel(".return_sites", 4, func([]byte) uint64 { return 5 }); err != nil {
		return nil, err
	}
	if err := rel(".smp_locks", 4, func([]byte) uint64 { return 1 }); err != nil {
		return nil, err
	}
	if err := rel(".ibt_endbr_seal", 4, func([]byte) uint64 { return 4 }); err != nil {
		return nil, err
	}
	if s, d, err := sec(".parainstructions"); err != nil {
		return nil, err
	} else if s != nil {
		for off := 0; off+16 <= len(d); off += 16 {
			im.patches = append(im.patches, span{binary.LittleEndian.Uint64(d[off:]), uint64(d[off+9])})
		}
	}
	if err := im.relocs(raw, f); err != nil {
		return nil, err
	}
	return im, nil
}

// relocs reads the relocation table behind the ELF file.
func (im *Image) relocs(raw []byte, f *elf.File) error {
	var end uint64 // where the ELF file ends: its section headers
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.Size)
		}
	}
	le := binary.LittleEndian
	shEnd := le.Uint64(raw[0x28:]) + uint64(le.Uint16(raw[0x3c:]))*uint64(le.Uint16(raw[0x3a:])) // e_shoff + e_shnum*e_shentsize
	end = max(end, shEnd)
	if end > uint64(len(raw)) || (uint64(len(raw))-end)%4 != 0 {
		return fmt.Errorf("%w: no relocation table after the ELF file", ErrNotImage)
	}
	words := raw[end:]
	pos := len(words) - 4
	list := func() ([]uint64, error) {
		var out []uint64
		for ; pos >= 0; pos -= 4 {
			w := binary.LittleEndian.Uint32(words[pos:])
			if w == 0 {
				pos -= 4
				return out, nil
			}
			out = append(out, uint64(int64(int32(w)))) // sign-extended: a link address
		}
		return nil, fmt.Errorf("%w: relocation table without its end", ErrNotImage)
	}
	var err error
	if im.rel32, err = list(); err != nil {
		return err
	}
	if im.rel32neg, err = list(); err != nil {
		return err
	}
	if im.rel64, err = list(); err != nil {
		return err
	}
	for _, l := range [][]uint64{im.rel32, im.rel32neg, im.rel64} {
		slices.Sort(l)
	}
	return nil
}

// bytesAt returns the image's bytes at link address a (text or rodata).
func (im *Image) bytesAt(a, n uint64) ([]byte, bool) {
	for _, s := range []segment{im.Text, im.Rodata} {
		if a >= s.Addr && a+n <= s.Addr+uint64(len(s.Data)) && a+n >= a {
			return s.Data[a-s.Addr : a-s.Addr+n], true
		}
	}
	return nil, false
}

// relocated returns the image's bytes at link address a as the boot code
// leaves them when it moves the kernel by delta.
func (im *Image) relocated(a, n, delta uint64) ([]byte, bool) {
	src, ok := im.bytesAt(a, n)
	if !ok {
		return nil, false
	}
	b := append([]byte(nil), src...)
	apply := func(list []uint64, width uint64, fix func(p []byte)) {
		i, _ := slices.BinarySearch(list, a)
		for ; i < len(list) && list[i]+width <= a+n; i++ {
			fix(b[list[i]-a:])
		}
	}
	le := binary.LittleEndian
	apply(im.rel32, 4, func(p []byte) { le.PutUint32(p, le.Uint32(p)+uint32(delta)) })
	apply(im.rel32neg, 4, func(p []byte) { le.PutUint32(p, le.Uint32(p)-uint32(delta)) })
	apply(im.rel64, 8, func(p []byte) { le.PutUint64(p, le.Uint64(p)+delta) })
	return b, true
}
