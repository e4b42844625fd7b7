package guestmem

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Mem is guest physical memory mapped from a shared RAM file. Offset =
// guest physical address for RAM below the PCI hole (3 GiB on the pc
// machine), which covers guests of up to 3 GiB.
type Mem struct {
	data []byte
}

var _ io.ReaderAt = (*Mem)(nil)

// OpenShared maps a QEMU memory-backend-file read-only, populating the
// page tables at once so that scans do not fault page by page.
func OpenShared(path string) (*Mem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	defer f.Close()
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
	return &Mem{data: data}, nil
}

// Bytes exposes the mapping itself for scans that must not copy. The guest
// keeps writing: treat the contents as a moving target.
func (m *Mem) Bytes() []byte { return m.data }

// Size is the mapped size in bytes.
func (m *Mem) Size() int64 { return int64(len(m.data)) }

// ReadAt copies guest physical memory at off.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.data)) {
		return 0, fmt.Errorf("guest memory: address %#x outside RAM (%#x bytes)", off, len(m.data))
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Index returns the first physical address of needle at or after from, or
// -1. The guest runs on: what is found may change right after.
func (m *Mem) Index(needle []byte, from int64) int64 {
	if from < 0 || from >= int64(len(m.data)) {
		return -1
	}
	i := bytes.Index(m.data[from:], needle)
	if i < 0 {
		return -1
	}
	return from + int64(i)
}

// Close unmaps the memory.
func (m *Mem) Close() error {
	if m.data == nil {
		return nil
	}
	err := unix.Munmap(m.data)
	m.data = nil
	return err
}
