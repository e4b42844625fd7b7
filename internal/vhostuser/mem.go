package vhostuser

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// region is one mapped region of guest RAM.
type region struct {
	gpa, size, uva uint64
	mapping        []byte // the whole mmap (mmap_offset + size)
	data           []byte // the region itself
}

// memTable is the guest's RAM as the front-end described it.
type memTable struct {
	regions []region
}

const maxRegions = 8

// parseMemTable maps the regions of a SET_MEM_TABLE message; fds are
// consumed (closed once mapped).
func parseMemTable(m *message) (*memTable, error) {
	defer m.closeFDs()
	p := m.payload
	if len(p) < 8 {
		return nil, &ProtocolError{m.req, "short memory table"}
	}
	n := binary.LittleEndian.Uint32(p)
	if n == 0 || n > maxRegions || len(p) < 8+int(n)*32 || len(m.fds) != int(n) {
		return nil, &ProtocolError{m.req, fmt.Sprintf("%d regions, %d bytes, %d descriptors", n, len(p), len(m.fds))}
	}
	t := &memTable{}
	for i := 0; i < int(n); i++ {
		r := p[8+32*i:]
		reg := region{gpa: binary.LittleEndian.Uint64(r), size: binary.LittleEndian.Uint64(r[8:]), uva: binary.LittleEndian.Uint64(r[16:])}
		off := binary.LittleEndian.Uint64(r[24:])
		total := reg.size + off
		if reg.size == 0 || total < reg.size || total > 1<<40 || reg.gpa+reg.size < reg.gpa || reg.uva+reg.size < reg.uva {
			t.unmap()
			return nil, &ProtocolError{m.req, fmt.Sprintf("region %d: size %#x at offset %#x", i, reg.size, off)}
		}
		mapping, err := unix.Mmap(m.fds[i], 0, int(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.unmap()
			return nil, fmt.Errorf("vhost-user: map region %d (%#x bytes): %w", i, total, err)
		}
		reg.mapping, reg.data = mapping, mapping[off:]
		t.regions = append(t.regions, reg)
	}
	return t, nil
}

func (t *memTable) unmap() {
	if t == nil {
		return
	}
	for _, r := range t.regions {
		unix.Munmap(r.mapping)
	}
	t.regions = nil
}

// guest returns n bytes at guest physical address gpa, which must lie in
// one region.
func (t *memTable) guest(gpa, n uint64) ([]byte, bool) {
	return t.find(gpa, n, func(r *region) uint64 { return r.gpa })
}

// user returns n bytes at front-end virtual address uva (vring addresses).
func (t *memTable) user(uva, n uint64) ([]byte, bool) {
	return t.find(uva, n, func(r *region) uint64 { return r.uva })
}

// find returns n bytes at address a of the space that base gives each
// region's start in.
func (t *memTable) find(a, n uint64, base func(*region) uint64) ([]byte, bool) {
	for i := range t.regions {
		r := &t.regions[i]
		if b := base(r); a >= b && a-b <= r.size && n <= r.size-(a-b) {
			o := a - b
			return r.data[o : o+n : o+n], true
		}
	}
	return nil, false
}
