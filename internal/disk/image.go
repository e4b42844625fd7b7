package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Image is a disk image: a guest-visible disk of Size bytes.
type Image interface {
	io.ReaderAt
	Size() int64
	Format() string
	Close() error
}

// Open opens a raw or qcow2 image read-only, telling them apart by magic.
func Open(path string) (Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return OpenFile(f)
}

// OpenFile is Open of a file already opened (e.g. beneath a host root);
// the image owns f and closes it.
func OpenFile(f *os.File) (Image, error) {
	path := f.Name()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err == nil && string(magic[:]) == qcow2Magic {
		img, err := NewQcow2(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return img, nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &raw{f: f, size: st.Size()}, nil
}

type raw struct {
	f    *os.File
	size int64
}

func (r *raw) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *raw) Size() int64                             { return r.size }
func (r *raw) Format() string                          { return "raw" }
func (r *raw) Close() error                            { return r.f.Close() }

const qcow2Magic = "QFI\xfb"

// Qcow2 is a read-only qcow2 image.
type Qcow2 struct {
	f           io.ReaderAt
	closer      io.Closer
	size        int64
	clusterBits uint32
	l1          []uint64
	mu          sync.Mutex
	l2cache     map[uint64][]uint64
}

// FormatError is a malformed image.
type FormatError struct {
	Format string
	Offset int64
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s: at byte %d: %s", e.Format, e.Offset, e.Msg)
}

// ErrUnsupported marks valid images this reader does not handle.
var ErrUnsupported = errors.New("unsupported")

// Limits on what a qcow2 header may ask for.
const (
	maxQcow2Size = 1 << 50
	maxL1        = 1 << 24
)

// NewQcow2 reads a qcow2 header and its L1 table.
func NewQcow2(f io.ReaderAt) (*Qcow2, error) {
	bad := func(off int64, format string, a ...any) error {
		return &FormatError{Format: "qcow2", Offset: off, Msg: fmt.Sprintf(format, a...)}
	}
	var h [104]byte
	if n, err := f.ReadAt(h[:72], 0); n < 72 {
		return nil, bad(0, "header truncated: %v", err)
	}
	be := binary.BigEndian
	if string(h[:4]) != qcow2Magic {
		return nil, bad(0, "bad magic % x", h[:4])
	}
	version := be.Uint32(h[4:])
	if version != 2 && version != 3 {
		return nil, bad(4, "version %d (2 or 3 expected)", version)
	}
	if be.Uint64(h[8:]) != 0 {
		return nil, fmt.Errorf("qcow2: a backing file: %w", ErrUnsupported)
	}
	q := &Qcow2{f: f, clusterBits: be.Uint32(h[20:]), size: int64(be.Uint64(h[24:])), l2cache: map[uint64][]uint64{}}
	if q.clusterBits < 9 || q.clusterBits > 21 {
		return nil, bad(20, "cluster_bits %d", q.clusterBits)
	}
	if q.size < 0 || q.size > maxQcow2Size {
		return nil, bad(24, "size %d", q.size)
	}
	if be.Uint32(h[32:]) != 0 {
		return nil, fmt.Errorf("qcow2: encryption: %w", ErrUnsupported)
	}
	l1Size := be.Uint32(h[36:])
	l1Off := be.Uint64(h[40:])
	if version == 3 {
		if n, _ := f.ReadAt(h[72:104], 72); n == 32 {
			// Incompatible features: bit 0 dirty (refcounts only: fine to
			// read), bit 1 corrupt, anything else unknown.
			inc := be.Uint64(h[72:])
			if inc&^1 != 0 {
				return nil, fmt.Errorf("qcow2: incompatible features %#x: %w", inc, ErrUnsupported)
			}
		}
	}
	l2Entries := uint64(1) << (q.clusterBits - 3)
	need := (uint64(q.size) + l2Entries<<q.clusterBits - 1) / (l2Entries << q.clusterBits)
	if uint64(l1Size) < need || l1Size > maxL1 {
		return nil, bad(36, "l1_size %d for a %d-byte disk (%d needed)", l1Size, q.size, need)
	}
	// Probe the table's last byte before allocating it: the header is
	// untrusted and l1_size may be large.
	var probe [1]byte
	if n, _ := f.ReadAt(probe[:], int64(l1Off)+8*int64(l1Size)-1); n < 1 || l1Off > maxQcow2Size {
		return nil, bad(40, "L1 table (%d entries at %d) runs past the end of the file", l1Size, l1Off)
	}
	buf := make([]byte, 8*int(l1Size))
	if n, _ := f.ReadAt(buf, int64(l1Off)); n < len(buf) {
		return nil, bad(40, "L1 table (%d entries at %d) runs past the end of the file", l1Size, l1Off)
	}
	q.l1 = make([]uint64, l1Size)
	for i := range q.l1 {
		q.l1[i] = be.Uint64(buf[8*i:])
	}
	if c, ok := f.(io.Closer); ok {
		q.closer = c
	}
	return q, nil
}

// Size is the virtual disk size.
func (q *Qcow2) Size() int64 { return q.size }

// Format implements Image.
func (q *Qcow2) Format() string { return "qcow2" }

// Close closes the file.
func (q *Qcow2) Close() error {
	if q.closer != nil {
		return q.closer.Close()
	}
	return nil
}

const (
	qcowOffsetMask = 0x00fffffffffffe00
	qcowCompressed = 1 << 62
	qcowZero       = 1 // v3 L2: all zeros
)

// l2 returns an L2 table (cached).
func (q *Qcow2) l2(off uint64) ([]uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t, ok := q.l2cache[off]; ok {
		return t, nil
	}
	n := 1 << (q.clusterBits - 3)
	buf := make([]byte, 8*n)
	if r, _ := q.f.ReadAt(buf, int64(off)); r < len(buf) {
		return nil, &FormatError{Format: "qcow2", Offset: int64(off), Msg: "L2 table runs past the end of the file"}
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[8*i:])
	}
	if len(q.l2cache) > 4096 {
		clear(q.l2cache)
	}
	q.l2cache[off] = t
	return t, nil
}

// HostOffset maps a guest offset to where its bytes are in the image file
// (-1: unallocated or zero, reads as zeros).
func (q *Qcow2) HostOffset(off int64) (int64, error) {
	cs := int64(1) << q.clusterBits
	l2bits := q.clusterBits - 3
	cluster := uint64(off) >> q.clusterBits
	i1, i2 := cluster>>l2bits, cluster&(1<<l2bits-1)
	if i1 >= uint64(len(q.l1)) {
		return 0, &FormatError{Format: "qcow2", Offset: 40, Msg: fmt.Sprintf("guest offset %d past the L1 table", off)}
	}
	l2off := q.l1[i1] & qcowOffsetMask
	if l2off == 0 {
		return -1, nil
	}
	t, err := q.l2(l2off)
	if err != nil {
		return 0, err
	}
	e := t[i2]
	if e&qcowCompressed != 0 {
		return 0, fmt.Errorf("qcow2: compressed cluster at guest offset %d: %w", off, ErrUnsupported)
	}
	if e&qcowZero != 0 {
		return -1, nil
	}
	host := e & qcowOffsetMask
	if host == 0 {
		return -1, nil
	}
	return int64(host) + off&(cs-1), nil
}

// ReadAt reads guest bytes.
func (q *Qcow2) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("qcow2: negative offset")
	}
	cs := int64(1) << q.clusterBits
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= q.size {
			return n, io.EOF
		}
		chunk := min(int64(len(p)-n), cs-pos&(cs-1), q.size-pos)
		host, err := q.HostOffset(pos)
		if err != nil {
			return n, err
		}
		if host < 0 {
			clear(p[n : n+int(chunk)])
		} else if r, err := q.f.ReadAt(p[n:n+int(chunk)], host); r < int(chunk) {
			return n + r, &FormatError{Format: "qcow2", Offset: host, Msg: fmt.Sprintf("data cluster runs past the end of the file: %v", err)}
		}
		n += int(chunk)
	}
	return n, nil
}
