package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Backend is the disk image a BlockServer serves.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// VectorBackend is a Backend that moves all the buffers of a request in
// one call (a 128 KiB request from Linux arrives as up to 32 page-sized
// buffers).
type VectorBackend interface {
	Backend
	ReadvAt(bufs [][]byte, off int64) error
	WritevAt(bufs [][]byte, off int64) error
}

// File is a disk image file as a VectorBackend (preadv/pwritev). The file
// may be opened with O_DIRECT (the host's page cache bypassed, as QEMU's
// cache=none), with Buffered the same image opened without: a request
// O_DIRECT refuses (guest buffers, offset or length not aligned the way
// the host wants) goes through Buffered. Linux keeps the two coherent: a
// direct read or write first writes back and drops the cached pages of
// its range.
type File struct {
	*os.File
	Buffered *os.File
}

// ReadvAt fills bufs from off; reading past the end is an error.
func (f File) ReadvAt(bufs [][]byte, off int64) error { return f.io(bufs, off, false) }

// WritevAt writes bufs at off.
func (f File) WritevAt(bufs [][]byte, off int64) error { return f.io(bufs, off, true) }

// ReadAt is io.ReaderAt with ReadvAt's fallback.
func (f File) ReadAt(b []byte, off int64) (int, error) {
	if err := f.io([][]byte{b}, off, false); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteAt is io.WriterAt with WritevAt's fallback.
func (f File) WriteAt(b []byte, off int64) (int, error) {
	if err := f.io([][]byte{b}, off, true); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (f File) io(bufs [][]byte, off int64, write bool) error {
	err := vec(f.File, bufs, off, write)
	if f.Buffered != nil && errors.Is(err, unix.EINVAL) {
		// The whole request once more (a partial direct transfer
		// before the refusal is simply written again).
		return vec(f.Buffered, bufs, off, write)
	}
	return err
}

func vec(f *os.File, bufs [][]byte, off int64, write bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		for len(bufs) > 0 {
			var n int
			if write {
				n, ioErr = unix.Pwritev(int(fd), bufs, off)
			} else {
				n, ioErr = unix.Preadv(int(fd), bufs, off)
			}
			if ioErr == unix.EINTR {
				continue
			}
			if ioErr != nil {
				return
			}
			if n == 0 {
				ioErr = io.ErrUnexpectedEOF
				return
			}
			off += int64(n)
			for len(bufs) > 0 && n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			}
			if n > 0 {
				bufs = append([][]byte{bufs[0][n:]}, bufs[1:]...)
			}
		}
	})
	if err != nil {
		return err
	}
	return ioErr
}

// Extent is a byte range of the disk.
type Extent struct{ Offset, Length int64 }

// BlockServer serves one virtio-blk disk to one front-end at a time.
type BlockServer struct {
	Size    int64 // bytes, a multiple of 512
	Backend Backend
	Serial  string // GET_ID (at most 20 bytes)
	// OnWrite sees every applied write (off, length) before its completion
	// is published to the guest.
	OnWrite func(off, n int64)
	// Zero returns the parts of [off, off+n) that must read as zeros
	// (isolated sectors); nil for none.
	Zero func(off, n int64) []Extent
	// Poll is how long the worker keeps watching the ring after its last
	// request before it sleeps until the guest kicks (0: it sleeps at
	// once). While it polls the guest is told not to kick, which saves a
	// wake-up per request under synchronous I/O at the price of that much
	// CPU after each burst (like QEMU's adaptive polling, poll-max-ns).
	Poll time.Duration
	Log  *slog.Logger

	mu   sync.Mutex
	conn *net.UnixConn
}

// virtio-blk request types and status values.
const (
	blkIn     = 0
	blkOut    = 1
	blkFlush  = 4
	blkGetID  = 8
	statusOK  = 0
	statusIO  = 1
	statusUns = 2
	sector    = 512
)

// Serve accepts front-end connections until ln is closed, one at a time.
func (s *BlockServer) Serve(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		c, ok := conn.(*net.UnixConn)
		if !ok {
			conn.Close()
			return fmt.Errorf("vhost-user: %T is no unix socket connection", conn)
		}
		if err := s.ServeConn(c); err != nil && s.Log != nil {
			s.Log.Warn("vhost-user connection", "err", err)
		}
	}
}

// Close ends the current connection, if any.
func (s *BlockServer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// device is the state of one front-end connection.
type device struct {
	s             *BlockServer
	features      uint64
	protocol      uint64
	mem           *memTable
	q             queue
	memMu         sync.RWMutex // mem and the ring mappings; the queue holds it read-locked per batch
	protocolAcked bool
	iov           [][]byte // the worker's scratch
}

// queue is the single request queue and its worker.
type queue struct {
	num                          uint16
	descAddr, availAddr, usedAdr uint64
	base                         uint16
	kick, call                   *os.File
	enabled                      bool
	running                      bool
	stop                         chan struct{}
	done                         chan uint16 // the worker's last avail index when it ends
	err                          error
}

// ServeConn serves one front-end connection until it closes.
func (s *BlockServer) ServeConn(c *net.UnixConn) error {
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	d := &device{s: s}
	defer func() {
		d.stopQueue()
		d.q.closeFiles()
		d.memMu.Lock()
		d.mem.unmap()
		d.mem = nil
		d.memMu.Unlock()
		c.Close()
	}()
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	for {
		m, err := readMessage(c, oob)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		reply, err := d.handle(&m)
		m.closeFDs()
		if err != nil {
			return err
		}
		if reply != nil {
			if err := writeReply(c, m.req, reply); err != nil {
				return err
			}
		} else if m.flags&flagNeedReply != 0 {
			if err := writeReply(c, m.req, u64Bytes(0)); err != nil {
				return err
			}
		}
	}
}

const deviceFeatures = 1<<featSegMax | 1<<featFlush | 1<<featProtocolFeatures | 1<<featVersion1

func (d *device) handle(m *message) ([]byte, error) {
	switch m.req {
	case reqGetFeatures:
		return u64Bytes(deviceFeatures), nil
	case reqSetFeatures:
		f, err := m.u64()
		if err != nil {
			return nil, err
		}
		if f&^uint64(deviceFeatures) != 0 {
			return nil, &ProtocolError{m.req, fmt.Sprintf("features %#x beyond the offered %#x", f, uint64(deviceFeatures))}
		}
		d.features = f
		d.protocolAcked = f&(1<<featProtocolFeatures) != 0
	case reqGetProtocolFeatures:
		return u64Bytes(1 << protoConfig), nil
	case reqSetProtocolFeatures:
		f, err := m.u64()
		if err != nil {
			return nil, err
		}
		d.protocol = f & (1 << protoConfig)
	case reqSetOwner, reqResetOwner:
	case reqGetQueueNum:
		return u64Bytes(1), nil
	case reqSetMemTable:
		t, err := parseMemTable(m)
		if err != nil {
			return nil, err
		}
		// The ring lives in the old mapping: stop the worker, swap, restart
		// it on the new one.
		running := d.q.running
		d.stopQueue()
		d.memMu.Lock()
		old := d.mem
		d.mem = t
		d.memMu.Unlock()
		old.unmap()
		if running {
			d.maybeStart()
		}
	case reqGetConfig:
		return d.config(m)
	case reqSetVringNum, reqSetVringBase, reqSetVringEnable, reqGetVringBase:
		idx, num, err := m.state()
		if err != nil {
			return nil, err
		}
		if idx != 0 {
			return nil, &ProtocolError{m.req, fmt.Sprintf("queue %d (one queue)", idx)}
		}
		switch m.req {
		case reqSetVringNum:
			if num == 0 || num > maxQueueSize || num&(num-1) != 0 {
				return nil, &ProtocolError{m.req, fmt.Sprintf("queue size %d", num)}
			}
			d.stopQueue() // a running queue changes only once stopped
			d.q.num = uint16(num)
			d.maybeStart()
		case reqSetVringBase:
			d.stopQueue()
			d.q.base = uint16(num)
			d.maybeStart()
		case reqSetVringEnable:
			d.q.enabled = num == 1
			if !d.q.enabled {
				d.stopQueue() // disabled: requests wait in the ring
			}
			d.maybeStart()
		case reqGetVringBase:
			base := d.stopQueue()
			d.q.closeFiles()
			return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0), uint32(base)), nil
		}
	case reqSetVringAddr:
		p := m.payload
		if len(p) < 40 {
			return nil, &ProtocolError{m.req, "short vring address"}
		}
		if idx := binary.LittleEndian.Uint32(p); idx != 0 {
			return nil, &ProtocolError{m.req, fmt.Sprintf("queue %d (one queue)", idx)}
		}
		d.stopQueue()
		d.q.descAddr = binary.LittleEndian.Uint64(p[8:])
		d.q.usedAdr = binary.LittleEndian.Uint64(p[16:])
		d.q.availAddr = binary.LittleEndian.Uint64(p[24:])
		d.maybeStart()
	case reqSetVringKick, reqSetVringCall, reqSetVringErr:
		v, err := m.u64()
		if err != nil {
			return nil, err
		}
		if v&0xff != 0 {
			return nil, &ProtocolError{m.req, fmt.Sprintf("queue %d (one queue)", v&0xff)}
		}
		var f *os.File
		if v&0x100 == 0 {
			fd, ok := m.takeFD()
			if !ok {
				return nil, &ProtocolError{m.req, fmt.Sprintf("%d file descriptors, want one", len(m.fds))}
			}
			f = os.NewFile(uintptr(fd), "vring-eventfd")
		}
		switch m.req {
		case reqSetVringKick:
			if f == nil {
				return nil, &ProtocolError{m.req, "no kick descriptor (polling is not supported)"}
			}
			d.stopQueue()
			if d.q.kick != nil {
				d.q.kick.Close()
			}
			d.q.kick = f
			d.maybeStart()
		case reqSetVringCall:
			d.memMu.Lock() // the worker signals under the read lock
			if d.q.call != nil {
				d.q.call.Close()
			}
			d.q.call = f
			d.memMu.Unlock()
		default:
			if f != nil {
				f.Close()
			}
		}
	default:
		if d.s.Log != nil {
			d.s.Log.Debug("vhost-user: ignored request", "req", m.req)
		}
	}
	return nil, nil
}

// config answers GET_CONFIG with struct virtio_blk_config.
func (d *device) config(m *message) ([]byte, error) {
	p := m.payload
	if len(p) < 12 {
		return nil, &ProtocolError{m.req, "short config request"}
	}
	off, size := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
	var cfg [60]byte
	binary.LittleEndian.PutUint64(cfg[0:], uint64(d.s.Size/sector)) // capacity
	binary.LittleEndian.PutUint32(cfg[12:], 126)                    // seg_max (queue size 128 - 2)
	binary.LittleEndian.PutUint16(cfg[34:], 1)                      // num_queues
	if uint64(off)+uint64(size) > uint64(len(cfg)) || size > maxPayload-12 {
		return nil, &ProtocolError{m.req, fmt.Sprintf("config bytes %d+%d of %d", off, size, len(cfg))}
	}
	out := make([]byte, 12+size)
	copy(out, p[:12])
	copy(out[12:], cfg[off:off+size])
	return out, nil
}

// maybeStart starts the worker once the queue is complete and enabled.
func (d *device) maybeStart() {
	q := &d.q
	if q.running || q.kick == nil || q.num == 0 || d.mem == nil || (d.protocolAcked && !q.enabled) {
		return
	}
	d.memMu.RLock()
	r, err := mapRing(d.mem, q.num, q.descAddr, q.availAddr, q.usedAdr)
	d.memMu.RUnlock()
	if err != nil {
		q.err = err
		if d.s.Log != nil {
			d.s.Log.Warn("vhost-user queue", "err", err)
		}
		return
	}
	r.lastAvail, r.usedIdx = q.base, q.base
	q.running, q.stop, q.done = true, make(chan struct{}), make(chan uint16, 1)
	go d.work(r, q.kick, q.stop, q.done)
}

// stopQueue stops the worker and returns the next avail index to serve.
func (d *device) stopQueue() uint16 {
	q := &d.q
	if !q.running {
		return q.base
	}
	close(q.stop)
	q.kick.Write(u64Bytes(1)) // wake the worker
	q.base = <-q.done
	q.running = false
	return q.base
}

func (q *queue) closeFiles() {
	for _, f := range []**os.File{&q.kick, &q.call} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// work serves the queue: wait for a kick, serve every available request,
// signal the guest; until stopped.
func (d *device) work(r *ring, kick *os.File, stop chan struct{}, done chan uint16) {
	one := u64Bytes(1)
	segs := make([]segment, 0, 16)
	defer func() {
		if r.usedFlags&usedNoNotify != 0 {
			r.suppressKicks(false) // the next worker starts by waiting for a kick
		}
		done <- r.lastAvail
	}()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	resume := false    // a poll that must go on
	var last time.Time // of the last request served
	for !stopped() {
		d.memMu.RLock()
		served, err := d.drain(r, &segs)
		if served && r.availFlags()&availNoInterrupt == 0 && d.q.call != nil {
			d.q.call.Write(one)
		}
		more := false
		if served {
			last = time.Now()
		}
		if err == nil && (served || resume) && d.s.Poll > 0 {
			more, err = d.poll(r, &segs, &last, stopped)
		}
		resume = more
		// A request published while kicks were off has no kick to wake us.
		pending := err == nil && (more || r.lastAvail != r.availIdx())
		d.memMu.RUnlock()
		if err != nil {
			if d.s.Log != nil {
				d.s.Log.Warn("vhost-user queue stopped", "err", err)
			}
			<-stop
			return
		}
		if pending {
			continue
		}
		if waitKick(kick) != nil {
			<-stop
			return
		}
	}
}

// drain serves every available request.
func (d *device) drain(r *ring, segs *[]segment) (served bool, err error) {
	for {
		head, ok := r.next()
		if !ok {
			return served, nil
		}
		if *segs, err = r.chain(d.mem, head, *segs); err != nil {
			return served, err
		}
		r.complete(head, d.serve(*segs))
		served = true
	}
}

// poll watches the ring with kicks off for up to Poll after the last
// request, serving what comes in. It returns with kicks back on (the
// caller must look at the ring once more), or, after maxPollHold under a
// steady load, with more set and kicks still off: the caller releases
// memMu (SET_VRING_CALL waits for it) and polls again at once.
func (d *device) poll(r *ring, segs *[]segment, last *time.Time, stopped func() bool) (more bool, err error) {
	one := u64Bytes(1)
	r.suppressKicks(true)
	start := time.Now()
	for spins := 0; ; spins++ {
		if r.lastAvail != r.availIdx() {
			if _, err := d.drain(r, segs); err != nil {
				r.suppressKicks(false)
				return false, err
			}
			if r.availFlags()&availNoInterrupt == 0 && d.q.call != nil {
				d.q.call.Write(one)
			}
			*last = time.Now()
		}
		if spins%64 != 0 {
			continue
		}
		if time.Since(*last) > d.s.Poll || stopped() {
			r.suppressKicks(false)
			return false, nil
		}
		if time.Since(start) > maxPollHold {
			return true, nil
		}
	}
}

// maxPollHold bounds one poll: the worker holds memMu read-locked while it
// polls.
const maxPollHold = 10 * time.Millisecond

// waitKick sleeps until the guest (or stopQueue) kicks. (A blocking
// poll(2) on the worker's own thread instead of Go's network poller was
// measured no faster under TCG on two cores: bench av.)
func waitKick(kick *os.File) error {
	var buf [8]byte
	_, err := kick.Read(buf[:])
	return err
}

// serve executes one request and returns the bytes written to the
// guest's buffers (status included).
func (d *device) serve(segs []segment) uint32 {
	// The status byte is the last byte of the last (writable) segment.
	last := segs[len(segs)-1]
	if !last.write || len(last.buf) == 0 {
		return 0 // no status to write: the guest gets nothing back
	}
	status := &last.buf[len(last.buf)-1]
	data := segs
	data[len(data)-1].buf = last.buf[:len(last.buf)-1]
	// The header: the first 16 readable bytes.
	var hdr [16]byte
	h := 0
	for len(data) > 0 && h < len(hdr) && !data[0].write {
		if data[0].buf == nil {
			*status = statusIO
			return 1
		}
		k := copy(hdr[h:], data[0].buf)
		h += k
		data[0].buf = data[0].buf[k:]
		if len(data[0].buf) == 0 {
			data = data[1:]
		}
	}
	if h < len(hdr) {
		*status = statusIO
		return 1
	}
	typ, sec := binary.LittleEndian.Uint32(hdr[0:]), binary.LittleEndian.Uint64(hdr[8:])
	// Empty buffers (the status descriptor, once its byte is taken) carry
	// nothing.
	data = slices.DeleteFunc(data, func(s segment) bool { return s.buf != nil && len(s.buf) == 0 })
	st, written := d.request(typ, sec, data)
	*status = st
	return written + 1
}

func (d *device) request(typ uint32, sec uint64, data []segment) (status byte, written uint32) {
	var n int64
	for _, s := range data {
		if s.buf == nil || s.write != (typ == blkIn || typ == blkGetID) {
			return statusIO, 0
		}
		n += int64(len(s.buf))
	}
	s := d.s
	switch typ {
	case blkIn, blkOut:
		if sec > uint64(s.Size/sector) || n > s.Size-int64(sec)*sector {
			return statusIO, 0
		}
		off := int64(sec) * sector
		if err := d.transfer(data, off, typ == blkOut); err != nil {
			return statusIO, 0
		}
		if typ == blkOut {
			if s.OnWrite != nil && n > 0 {
				s.OnWrite(off, n)
			}
			return statusOK, 0
		}
		if s.Zero != nil {
			for _, z := range s.Zero(off, n) {
				zeroRange(data, off, z)
			}
		}
		return statusOK, uint32(n)
	case blkFlush:
		if err := s.Backend.Sync(); err != nil {
			return statusIO, 0
		}
		return statusOK, 0
	case blkGetID:
		id := []byte(s.Serial)
		for _, seg := range data {
			k := copy(seg.buf, id)
			clear(seg.buf[k:])
			id = id[k:]
		}
		return statusOK, uint32(n)
	}
	return statusUns, 0
}

// transfer moves the request's buffers to or from the disk at off.
func (d *device) transfer(data []segment, off int64, write bool) error {
	if vb, ok := d.s.Backend.(VectorBackend); ok {
		d.iov = d.iov[:0]
		for _, seg := range data {
			d.iov = append(d.iov, seg.buf)
		}
		if write {
			return vb.WritevAt(d.iov, off)
		}
		return vb.ReadvAt(d.iov, off)
	}
	for _, seg := range data {
		var err error
		if write {
			_, err = d.s.Backend.WriteAt(seg.buf, off)
		} else {
			_, err = d.s.Backend.ReadAt(seg.buf, off)
		}
		if err != nil {
			return err
		}
		off += int64(len(seg.buf))
	}
	return nil
}

// zeroRange clears the bytes of z in the request's buffers (data starts at
// disk offset off).
func zeroRange(data []segment, off int64, z Extent) {
	pos := off
	for _, seg := range data {
		lo, hi := max(pos, z.Offset), min(pos+int64(len(seg.buf)), z.Offset+z.Length)
		if lo < hi {
			clear(seg.buf[lo-pos : hi-pos])
		}
		pos += int64(len(seg.buf))
	}
}
