package guestmem

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Segment is a run of guest physical memory present in a source: the bytes
// at guest physical addresses [PA, PA+len(Data)).
type Segment struct {
	PA   int64
	Data []byte
}

// End is the first physical address past the segment.
func (s Segment) End() int64 { return s.PA + int64(len(s.Data)) }

// Mem is guest physical memory: the live RAM of a QEMU guest or a dump
// file, mapped read-only (zero copy) and seen through its segments. Physical
// addresses outside every segment (the PCI hole, ranges a dump left out)
// read as an error, never as zeros.
type Mem struct {
	Format  string // "shared", "raw", "elf", "lime"
	segs    []Segment
	mapping []byte
}

var _ io.ReaderAt = (*Mem)(nil)

// ErrNotPresent is returned for physical addresses no segment holds.
var ErrNotPresent = errors.New("guest memory: address not present")

// PC machine layout: with 3.5 GiB of RAM or more, QEMU's "pc" machine puts
// the first 3 GiB below the PCI hole and the rest above 4 GiB.
const (
	pcHoleThreshold = 0xe0000000
	pcLowMem        = 0xc0000000
	fourGiB         = 1 << 32
)

// mapFile maps a file read-only, populating page tables at once so that
// scans do not fault page by page.
func mapFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	defer f.Close()
	return mapOpen(f, path)
}

// mapOpen maps an open file read-only (see mapFile).
func mapOpen(f *os.File, path string) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	if st.Size() == 0 {
		return nil, fmt.Errorf("guest memory: %s is empty", path)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("guest memory: mmap %s: %w", path, err)
	}
	return data, nil
}

// OpenShared maps the memory-backend-file of a running QEMU guest of the pc
// machine: file offsets are RAM offsets, laid out around the PCI hole.
func OpenShared(path string) (*Mem, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	return &Mem{Format: "shared", segs: pcLayout(data), mapping: data}, nil
}

// OpenSharedFile is OpenShared of a file already opened (e.g. beneath a
// host root); f may be closed afterwards.
func OpenSharedFile(f *os.File) (*Mem, error) {
	data, err := mapOpen(f, f.Name())
	if err != nil {
		return nil, err
	}
	return &Mem{Format: "shared", segs: pcLayout(data), mapping: data}, nil
}

func pcLayout(ram []byte) []Segment {
	var segs []Segment
	for _, r := range pcRanges(int64(len(ram))) {
		segs = append(segs, Segment{PA: r[0], Data: ram[r[1] : r[1]+r[2]]})
	}
	return segs
}

// pcRanges lays n bytes of RAM out as the pc machine does: (physical
// address, offset in the RAM block, length) per range.
func pcRanges(n int64) [][3]int64 {
	if n < pcHoleThreshold {
		return [][3]int64{{0, 0, n}}
	}
	return [][3]int64{{0, 0, pcLowMem}, {fourGiB, pcLowMem, n - pcLowMem}}
}

// Open maps a memory dump and tells its format from its first bytes: an ELF
// core (QMP dump-guest-memory, virsh dump), a LiME file, or else a raw dump
// whose file offset is the physical address.
func Open(path string) (*Mem, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	m, err := FromBytes(data)
	if err != nil {
		unix.Munmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.mapping = data
	return m, nil
}

// FromBytes interprets a dump held in memory (see Open).
func FromBytes(data []byte) (*Mem, error) {
	var (
		segs   []Segment
		format string
		err    error
	)
	switch {
	case bytes.HasPrefix(data, []byte("\x7fELF")):
		format = "elf"
		segs, err = parseELFCore(data)
	case bytes.HasPrefix(data, limeMagic[:]):
		format = "lime"
		segs, err = parseLiME(data)
	default:
		format = "raw"
		segs = []Segment{{PA: 0, Data: data}}
	}
	if err != nil {
		return nil, err
	}
	if err := checkSegments(segs); err != nil {
		return nil, err
	}
	return &Mem{Format: format, segs: segs}, nil
}

// checkSegments sorts segments by address and refuses overlaps.
func checkSegments(segs []Segment) error {
	if len(segs) == 0 {
		return errors.New("guest memory: no memory in the dump")
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].PA < segs[j].PA })
	for i := 1; i < len(segs); i++ {
		if segs[i].PA < segs[i-1].End() {
			return fmt.Errorf("guest memory: ranges overlap at %#x", segs[i].PA)
		}
	}
	return nil
}

// Segments returns the memory present, sorted by physical address. The
// slices alias the mapping: a live guest keeps writing them.
func (m *Mem) Segments() []Segment { return m.segs }

// Size is the first physical address past the last segment.
func (m *Mem) Size() int64 {
	if len(m.segs) == 0 {
		return 0
	}
	return m.segs[len(m.segs)-1].End()
}

// RAM is the number of bytes present.
func (m *Mem) RAM() int64 {
	var n int64
	for _, s := range m.segs {
		n += int64(len(s.Data))
	}
	return n
}

// find returns the index of the segment holding pa, or -1.
func (m *Mem) find(pa int64) int {
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].End() > pa })
	if i < len(m.segs) && m.segs[i].PA <= pa {
		return i
	}
	return -1
}

// ReadAt copies guest physical memory at pa. A read that runs into an
// absent range returns what it read and ErrNotPresent.
func (m *Mem) ReadAt(p []byte, pa int64) (int, error) {
	n := 0
	for n < len(p) {
		i := m.find(pa + int64(n))
		if i < 0 {
			return n, fmt.Errorf("%w: %#x", ErrNotPresent, pa+int64(n))
		}
		s := m.segs[i]
		n += copy(p[n:], s.Data[pa+int64(n)-s.PA:])
	}
	return n, nil
}

// Index returns the first physical address of needle at or after from, or
// -1. The guest runs on: what is found may change right after.
func (m *Mem) Index(needle []byte, from int64) int64 {
	for _, s := range m.segs {
		if s.End() <= from {
			continue
		}
		start := max(from, s.PA) - s.PA
		if i := bytes.Index(s.Data[start:], needle); i >= 0 {
			return s.PA + start + int64(i)
		}
	}
	return -1
}

// Close unmaps the memory.
func (m *Mem) Close() error {
	if m.mapping == nil {
		return nil
	}
	err := unix.Munmap(m.mapping)
	m.mapping, m.segs = nil, nil
	return err
}
