package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Split-ring descriptor flags.
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4

	availNoInterrupt = 1
	usedNoNotify     = 1
	maxQueueSize     = 32768
)

// errBroken stops a queue: the guest's ring cannot be trusted any more.
var errBroken = errors.New("vhost-user: virtqueue broken")

// ring is a split virtqueue in guest memory, as seen by the device.
type ring struct {
	num                uint16
	desc, avail, used  []byte
	lastAvail, usedIdx uint16
	usedFlags          uint16 // ours: usedNoNotify while the worker polls
}

// segment is one guest buffer of a descriptor chain.
type segment struct {
	buf   []byte // nil when the address is outside guest RAM
	write bool   // device-writable
}

// mapRing resolves the ring's parts (front-end virtual addresses).
func mapRing(t *memTable, num uint16, descAddr, availAddr, usedAddr uint64) (*ring, error) {
	if num == 0 || num > maxQueueSize || num&(num-1) != 0 {
		return nil, fmt.Errorf("vhost-user: queue size %d", num)
	}
	n := uint64(num)
	r := &ring{num: num}
	var ok1, ok2, ok3 bool
	r.desc, ok1 = t.user(descAddr, 16*n)
	r.avail, ok2 = t.user(availAddr, 6+2*n)
	r.used, ok3 = t.user(usedAddr, 6+8*n)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("vhost-user: ring addresses %#x %#x %#x are outside the memory table", descAddr, availAddr, usedAddr)
	}
	if availAddr%2 != 0 || usedAddr%4 != 0 {
		return nil, fmt.Errorf("vhost-user: misaligned ring (avail %#x, used %#x)", availAddr, usedAddr)
	}
	return r, nil
}

// word32 is the aligned 32-bit word at b[0:4] in shared memory.
func word32(b []byte) *uint32 { return (*uint32)(unsafe.Pointer(&b[0])) }

// availIdx reads the driver's avail index (an atomic load: the guest
// writes it concurrently; its ring entries are read after it).
func (r *ring) availIdx() uint16 { return uint16(atomic.LoadUint32(word32(r.avail)) >> 16) }

func (r *ring) availFlags() uint16 { return uint16(atomic.LoadUint32(word32(r.avail))) }

// next returns the head of the next available chain, if any.
func (r *ring) next() (uint16, bool) {
	if r.lastAvail == r.availIdx() {
		return 0, false
	}
	slot := 4 + 2*uint64(r.lastAvail%r.num)
	head := binary.LittleEndian.Uint16(r.avail[slot:])
	r.lastAvail++
	return head, true
}

// chain resolves a descriptor chain into segments. A chain that is
// malformed (bad index, loop, indirect table we never offered) breaks the
// queue; a buffer outside guest RAM becomes a nil segment (the request
// then fails with IOERR).
func (r *ring) chain(t *memTable, head uint16, segs []segment) ([]segment, error) {
	segs = segs[:0]
	i := head
	for count := 0; ; count++ {
		if i >= r.num || count >= int(r.num) {
			return nil, fmt.Errorf("%w: descriptor %d of chain %d (queue size %d)", errBroken, i, head, r.num)
		}
		d := r.desc[16*uint64(i):]
		addr := binary.LittleEndian.Uint64(d)
		n := binary.LittleEndian.Uint32(d[8:])
		flags := binary.LittleEndian.Uint16(d[12:])
		if flags&descIndirect != 0 {
			return nil, fmt.Errorf("%w: indirect descriptor (not negotiated)", errBroken)
		}
		buf, _ := t.guest(addr, uint64(n))
		segs = append(segs, segment{buf: buf, write: flags&descWrite != 0})
		if flags&descNext == 0 {
			return segs, nil
		}
		i = binary.LittleEndian.Uint16(d[14:])
	}
}

// complete publishes a used element: the element first, then the index.
func (r *ring) complete(head uint16, written uint32) {
	slot := 4 + 8*uint64(r.usedIdx%r.num)
	binary.LittleEndian.PutUint32(r.used[slot:], uint32(head))
	binary.LittleEndian.PutUint32(r.used[slot+4:], written)
	r.usedIdx++
	r.publish()
}

// publish stores the used ring's flags and index (they share its first
// word) with one atomic store, which also orders the element writes
// before it.
func (r *ring) publish() {
	atomic.StoreUint32(word32(r.used), uint32(r.usedIdx)<<16|uint32(r.usedFlags))
}

// suppressKicks tells the guest whether it may skip notifying us (we are
// polling the ring). After turning kicks back on, the caller must look at
// the avail index once more: a request may have come in while they were
// off.
func (r *ring) suppressKicks(on bool) {
	if on {
		r.usedFlags |= usedNoNotify
	} else {
		r.usedFlags &^= usedNoNotify
	}
	r.publish()
}
