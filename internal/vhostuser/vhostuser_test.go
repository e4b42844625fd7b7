package vhostuser

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memDisk is an in-memory Backend.
type memDisk struct {
	mu    sync.Mutex
	b     []byte
	syncs int
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.b[off:]), nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.b[off:], p), nil
}

func (m *memDisk) Sync() error { m.mu.Lock(); m.syncs++; m.mu.Unlock(); return nil }

// snapshot returns the disk's bytes and sync count (the worker writes them
// concurrently; the used ring orders them for the guest, not for the race
// detector).
func (m *memDisk) snapshot() ([]byte, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.b), m.syncs
}

// Guest memory layout of the fake front-end.
const (
	ramSize   = 1 << 20
	uvaBase   = 0x7f00_0000_0000 // the front-end's address of guest RAM
	qsize     = 16
	descGPA   = 0x1000
	availGPA  = 0x1100
	usedGPA   = 0x1200
	bufGPA    = 0x10000
	outsideGP = 0xfff0_0000
)

// front is a fake vhost-user front-end (what QEMU does), over a socket
// pair, with guest RAM in a memfd.
type front struct {
	t          *testing.T
	c          *net.UnixConn
	ram        []byte
	memfd      int
	kick, call int
	avail      uint16
	nextDesc   uint16
	kicks      int // notifications sent
	done       chan error
}

func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func newFront(t *testing.T, s *BlockServer) *front {
	srv, cli := socketPair(t)
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(srv) }()
	return frontOn(t, cli, done)
}

// frontOn is a fake front-end on connection cli; done reports the end of
// the back-end's side (nil: not observable).
func frontOn(t *testing.T, cli *net.UnixConn, done chan error) *front {
	fd, err := unix.MemfdCreate("guest-ram", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, ramSize); err != nil {
		t.Fatal(err)
	}
	ram, err := unix.Mmap(fd, 0, ramSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	efd := func() int {
		e, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	f := &front{t: t, c: cli, ram: ram, memfd: fd, kick: efd(), call: efd(), done: done}
	t.Cleanup(func() {
		cli.Close()
		if done != nil {
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Error("ServeConn did not return after the front-end closed")
			}
		}
		unix.Munmap(ram)
		unix.Close(fd)
		unix.Close(f.kick)
		unix.Close(f.call)
	})
	return f
}

func (f *front) send(req uint32, payload []byte, fds ...int) {
	f.t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, req)
	b = binary.LittleEndian.AppendUint32(b, flagVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := f.c.WriteMsgUnix(b, oob, nil); err != nil {
		f.t.Fatal(err)
	}
}

func (f *front) reply(req uint32) []byte {
	f.t.Helper()
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, hdrSize)
	if _, err := ioReadFull(f.c, hdr); err != nil {
		f.t.Fatalf("reply to %d: %v", req, err)
	}
	if got := binary.LittleEndian.Uint32(hdr); got != req || binary.LittleEndian.Uint32(hdr[4:]) != flagVersion|flagReply {
		f.t.Fatalf("reply header %x to request %d", hdr, req)
	}
	p := make([]byte, binary.LittleEndian.Uint32(hdr[8:]))
	if _, err := ioReadFull(f.c, p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func ioReadFull(c *net.UnixConn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func state(idx, num uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, idx), num)
}

// setup negotiates and starts queue 0, as QEMU does.
func (f *front) setup() {
	f.send(reqGetFeatures, nil)
	feat := binary.LittleEndian.Uint64(f.reply(reqGetFeatures))
	for _, bit := range []int{featVersion1, featFlush, featSegMax, featProtocolFeatures} {
		if feat&(1<<bit) == 0 {
			f.t.Fatalf("features %#x lack bit %d", feat, bit)
		}
	}
	f.send(reqSetFeatures, u64Bytes(feat))
	f.send(reqGetProtocolFeatures, nil)
	if p := binary.LittleEndian.Uint64(f.reply(reqGetProtocolFeatures)); p&(1<<protoConfig) == 0 {
		f.t.Fatalf("protocol features %#x lack CONFIG", p)
	}
	f.send(reqSetProtocolFeatures, u64Bytes(1<<protoConfig))
	f.send(reqSetOwner, nil)
	mt := binary.LittleEndian.AppendUint32(nil, 1)
	mt = binary.LittleEndian.AppendUint32(mt, 0)
	for _, v := range []uint64{0, ramSize, uvaBase, 0} {
		mt = binary.LittleEndian.AppendUint64(mt, v)
	}
	f.send(reqSetMemTable, mt, f.memfd)
	f.send(reqSetVringNum, state(0, qsize))
	addr := binary.LittleEndian.AppendUint32(nil, 0)
	addr = binary.LittleEndian.AppendUint32(addr, 0)
	for _, v := range []uint64{uvaBase + descGPA, uvaBase + usedGPA, uvaBase + availGPA, 0} {
		addr = binary.LittleEndian.AppendUint64(addr, v)
	}
	f.send(reqSetVringAddr, addr)
	f.send(reqSetVringBase, state(0, 0))
	f.send(reqSetVringCall, u64Bytes(0), f.call)
	f.send(reqSetVringKick, u64Bytes(0), f.kick)
	f.send(reqSetVringEnable, state(0, 1))
}

type buf struct {
	gpa   uint64
	n     uint32
	write bool
}

// submit places one chain in the ring and kicks.
func (f *front) submit(bufs ...buf) {
	head := f.nextDesc
	for i, b := range bufs {
		d := f.ram[descGPA+16*uint64(f.nextDesc):]
		binary.LittleEndian.PutUint64(d, b.gpa)
		binary.LittleEndian.PutUint32(d[8:], b.n)
		var flags uint16
		if b.write {
			flags |= descWrite
		}
		next := (f.nextDesc + 1) % qsize
		if i < len(bufs)-1 {
			flags |= descNext
		}
		binary.LittleEndian.PutUint16(d[12:], flags)
		binary.LittleEndian.PutUint16(d[14:], next)
		f.nextDesc = next
	}
	binary.LittleEndian.PutUint16(f.ram[availGPA+4+2*uint64(f.avail%qsize):], head)
	f.avail++
	binary.LittleEndian.PutUint16(f.ram[availGPA+2:], f.avail)
	// As a driver does: no kick while the device says it polls.
	if atomic.LoadUint32((*uint32)(unsafe.Pointer(&f.ram[usedGPA])))&usedNoNotify == 0 {
		unix.Write(f.kick, u64Bytes(1))
		f.kicks++
	}
}

// wait waits for used index n and returns the used element n-1.
func (f *front) wait(n uint16) (id, length uint32) {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for binary.LittleEndian.Uint16(f.ram[usedGPA+2:]) != n {
		if time.Now().After(deadline) {
			f.t.Fatalf("used index %d, want %d", binary.LittleEndian.Uint16(f.ram[usedGPA+2:]), n)
		}
		time.Sleep(time.Millisecond)
	}
	e := f.ram[usedGPA+4+8*uint64((n-1)%qsize):]
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[4:])
}

func header(typ uint32, sec uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, typ)
	binary.LittleEndian.PutUint64(h[8:], sec)
	return h
}

func TestBlockRequests(t *testing.T) {
	disk := &memDisk{b: make([]byte, 1<<20)}
	var writes []Extent
	var wmu sync.Mutex
	s := &BlockServer{Size: int64(len(disk.b)), Backend: disk, Serial: "secaas-test",
		OnWrite: func(off, n int64) { wmu.Lock(); writes = append(writes, Extent{off, n}); wmu.Unlock() },
		Zero: func(off, n int64) []Extent {
			return []Extent{{Offset: 4096 + 1000, Length: 500}} // isolated bytes, whatever is asked
		}}
	f := newFront(t, s)
	f.setup()

	// GET_CONFIG: capacity in sectors, one queue.
	cfgReq := binary.LittleEndian.AppendUint32(nil, 0)
	cfgReq = binary.LittleEndian.AppendUint32(cfgReq, 60)
	cfgReq = binary.LittleEndian.AppendUint32(cfgReq, 0)
	f.send(reqGetConfig, append(cfgReq, make([]byte, 60)...))
	cfg := f.reply(reqGetConfig)
	if len(cfg) != 72 || binary.LittleEndian.Uint64(cfg[12:]) != 2048 || binary.LittleEndian.Uint16(cfg[12+34:]) != 1 {
		t.Fatalf("config %x", cfg)
	}

	pattern := make([]byte, 8192)
	for i := range pattern {
		pattern[i] = byte(i*7 + 3)
	}
	hdrAt, dataAt, statusAt := uint64(bufGPA), uint64(bufGPA+0x1000), uint64(bufGPA+0x8000)
	n := uint16(0)
	do := func(typ uint32, sec uint64, bufs ...buf) (byte, uint32) {
		t.Helper()
		copy(f.ram[hdrAt:], header(typ, sec))
		f.ram[statusAt] = 0xff
		f.submit(append(append([]buf{{hdrAt, 16, false}}, bufs...), buf{statusAt, 1, true})...)
		n++
		_, l := f.wait(n)
		return f.ram[statusAt], l
	}

	// A write split over two descriptors.
	copy(f.ram[dataAt:], pattern)
	if st, l := do(blkOut, 8, buf{dataAt, 4096, false}, buf{dataAt + 4096, 4096, false}); st != statusOK || l != 1 {
		t.Fatalf("write: status %d, used length %d", st, l)
	}
	if b, _ := disk.snapshot(); !bytes.Equal(b[4096:4096+8192], pattern) {
		t.Fatal("write did not reach the disk")
	}
	wmu.Lock()
	if len(writes) != 1 || writes[0] != (Extent{4096, 8192}) {
		t.Fatalf("OnWrite saw %v", writes)
	}
	wmu.Unlock()

	// A read, with isolated bytes reading as zeros.
	clear(f.ram[dataAt : dataAt+8192])
	if st, l := do(blkIn, 8, buf{dataAt, 8192, true}); st != statusOK || l != 8193 {
		t.Fatalf("read: status %d, used length %d", st, l)
	}
	want := bytes.Clone(pattern)
	clear(want[1000:1500])
	if !bytes.Equal(f.ram[dataAt:dataAt+8192], want) {
		t.Fatal("read returned other bytes (or isolated bytes were not zeroed)")
	}
	if b, _ := disk.snapshot(); !bytes.Equal(b[4096+1000:4096+1500], pattern[1000:1500]) {
		t.Fatal("isolation changed the disk")
	}

	// FLUSH reaches the backend; GET_ID returns the serial.
	if st, _ := do(blkFlush, 0); st != statusOK {
		t.Fatalf("flush: status %d", st)
	}
	if _, syncs := disk.snapshot(); syncs != 1 {
		t.Fatalf("flush: %d syncs", syncs)
	}
	if st, l := do(blkGetID, 0, buf{dataAt, 20, true}); st != statusOK || l != 21 || string(bytes.TrimRight(f.ram[dataAt:dataAt+20], "\x00")) != "secaas-test" {
		t.Fatalf("get id: status %d, length %d, %q", st, l, f.ram[dataAt:dataAt+20])
	}

	// Bad requests: past the end, a buffer outside guest RAM, a wrong
	// direction, an unknown type. The disk stays as it was.
	before, _ := disk.snapshot()
	for name, c := range map[string]struct {
		typ  uint32
		sec  uint64
		bufs []buf
		want byte
	}{
		"past the end":     {blkOut, 2047, []buf{{dataAt, 1024, false}}, statusIO},
		"sector overflow":  {blkIn, 1 << 62, []buf{{dataAt, 512, true}}, statusIO},
		"outside RAM":      {blkOut, 0, []buf{{outsideGP, 512, false}}, statusIO},
		"wrong direction":  {blkOut, 0, []buf{{dataAt, 512, true}}, statusIO},
		"unknown request":  {99, 0, nil, statusUns},
		"header too short": {blkOut, 0, nil, statusOK}, // replaced below
	} {
		if name == "header too short" {
			f.ram[statusAt] = 0xff
			f.submit(buf{hdrAt, 8, false}, buf{statusAt, 1, true})
			n++
			f.wait(n)
			if f.ram[statusAt] != statusIO {
				t.Errorf("%s: status %d", name, f.ram[statusAt])
			}
			continue
		}
		if st, _ := do(c.typ, c.sec, c.bufs...); st != c.want {
			t.Errorf("%s: status %d, want %d", name, st, c.want)
		}
	}
	if after, _ := disk.snapshot(); !bytes.Equal(before, after) {
		t.Fatal("a refused request changed the disk")
	}

	// GET_VRING_BASE stops the queue at the next request to serve.
	f.send(reqGetVringBase, state(0, 0))
	if st := f.reply(reqGetVringBase); binary.LittleEndian.Uint32(st[4:]) != uint32(n) {
		t.Fatalf("vring base %d, want %d", binary.LittleEndian.Uint32(st[4:]), n)
	}
}

// TestBrokenChainStopsQueue: a descriptor loop stops the queue without
// hanging the connection; the front-end can still stop and restart it.
func TestBrokenChainStopsQueue(t *testing.T) {
	disk := &memDisk{b: make([]byte, 1<<20)}
	f := newFront(t, &BlockServer{Size: int64(len(disk.b)), Backend: disk})
	f.setup()
	d := f.ram[descGPA:]
	binary.LittleEndian.PutUint64(d, bufGPA)
	binary.LittleEndian.PutUint32(d[8:], 16)
	binary.LittleEndian.PutUint16(d[12:], descNext)
	binary.LittleEndian.PutUint16(d[14:], 0) // loops to itself
	binary.LittleEndian.PutUint16(f.ram[availGPA+4:], 0)
	binary.LittleEndian.PutUint16(f.ram[availGPA+2:], 1)
	unix.Write(f.kick, u64Bytes(1))
	time.Sleep(50 * time.Millisecond)
	if got := binary.LittleEndian.Uint16(f.ram[usedGPA+2:]); got != 0 {
		t.Fatalf("a broken chain was completed (used %d)", got)
	}
	f.send(reqGetVringBase, state(0, 0))
	if st := f.reply(reqGetVringBase); binary.LittleEndian.Uint32(st[4:]) != 1 {
		t.Fatalf("vring base %x", st)
	}
}

// TestBadMessages: malformed messages end the connection with an error.
func TestBadMessages(t *testing.T) {
	for name, c := range map[string]struct {
		req     uint32
		payload []byte
	}{
		"short features":   {reqSetFeatures, []byte{1}},
		"unknown features": {reqSetFeatures, u64Bytes(1 << 60)},
		"memory table":     {reqSetMemTable, make([]byte, 40)},
		"queue 1":          {reqSetVringNum, state(1, 16)},
		"queue size":       {reqSetVringNum, state(0, 100)},
		"kick without fd":  {reqSetVringKick, u64Bytes(0)},
		"config past end":  {reqGetConfig, append(state(50, 20), make([]byte, 24)...)},
	} {
		t.Run(name, func(t *testing.T) {
			s := &BlockServer{Size: 1 << 20, Backend: &memDisk{b: make([]byte, 1<<20)}}
			srv, cli := socketPair(t)
			defer cli.Close()
			done := make(chan error, 1)
			go func() { done <- s.ServeConn(srv) }()
			b := binary.LittleEndian.AppendUint32(nil, c.req)
			b = binary.LittleEndian.AppendUint32(b, flagVersion)
			b = binary.LittleEndian.AppendUint32(b, uint32(len(c.payload)))
			cli.Write(append(b, c.payload...))
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("accepted")
				}
				t.Log(err)
			case <-time.After(5 * time.Second):
				t.Fatal("connection not ended")
			}
		})
	}
}

// FuzzServeConn: any byte stream from a front-end ends the connection
// cleanly (no panic, no hang).
func FuzzServeConn(f *testing.F) {
	msg := func(req uint32, payload []byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, req)
		b = binary.LittleEndian.AppendUint32(b, flagVersion)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
		return append(b, payload...)
	}
	f.Add(msg(reqGetFeatures, nil))
	f.Add(append(msg(reqSetFeatures, u64Bytes(deviceFeatures)), msg(reqSetVringNum, state(0, 16))...))
	f.Add(msg(reqGetConfig, append(state(0, 60), make([]byte, 64)...)))
	f.Add(msg(reqGetVringBase, state(0, 0)))
	f.Add(msg(reqSetMemTable, make([]byte, 40)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &BlockServer{Size: 1 << 20, Backend: &memDisk{b: make([]byte, 1<<20)}}
		srv, cli := socketPair(t)
		done := make(chan error, 1)
		go func() { done <- s.ServeConn(srv) }()
		go func() {
			b := make([]byte, 4096)
			for {
				if _, err := cli.Read(b); err != nil {
					return
				}
			}
		}()
		cli.Write(data)
		cli.CloseWrite()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection not ended on %x", data)
		}
		cli.Close()
	})
}

// TestFileVectors: preadv/pwritev over many buffers, and a read past the
// end of the image is an error, not silent zeros.
func TestFileVectors(t *testing.T) {
	fh, err := os.CreateTemp(t.TempDir(), "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fh.Truncate(1 << 16)
	f := File{File: fh}
	var bufs [][]byte
	for i := 0; i < 32; i++ {
		bufs = append(bufs, bytes.Repeat([]byte{byte(i + 1)}, 100+i))
	}
	if err := f.WritevAt(bufs, 1000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 4000)
	for _, b := range bufs {
		got = append(got, b...)
	}
	onDisk := make([]byte, len(got))
	fh.ReadAt(onDisk, 1000)
	if !bytes.Equal(onDisk, got) {
		t.Fatal("pwritev wrote other bytes")
	}
	back := [][]byte{make([]byte, 7), make([]byte, len(got)-7)}
	if err := f.ReadvAt(back, 1000); err != nil || !bytes.Equal(append(back[0], back[1]...), got) {
		t.Fatalf("preadv: %v", err)
	}
	if err := f.ReadvAt([][]byte{make([]byte, 100)}, 1<<16-50); err == nil {
		t.Fatal("read past the end succeeded")
	}
}

// TestFileDirect: an O_DIRECT image with its buffered twin takes guest
// buffers at any address and requests at any offset (what O_DIRECT
// refuses goes through the twin), and reads see every write either way.
// Without the twin, a refused request fails instead of landing elsewhere.
func TestFileDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(path, make([]byte, 1<<16), 0o600); err != nil {
		t.Fatal(err)
	}
	direct, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT: %v", err)
	}
	defer direct.Close()
	buffered, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer buffered.Close()
	raw := make([]byte, 8192)
	for i := range raw {
		raw[i] = byte(i*7 + 3)
	}
	// Misaligned addresses: 1 and 3 bytes into Go slices.
	bufs := [][]byte{raw[1 : 1+512], raw[4000+3 : 4000+3+1024]}
	if err := (File{File: direct}).WritevAt(bufs, 4096); err == nil {
		t.Fatal("O_DIRECT took misaligned buffers: the test proves nothing here")
	}
	f := File{File: direct, Buffered: buffered}
	want := make([]byte, 1<<16)
	put := func(off int64, bufs ...[]byte) {
		t.Helper()
		if err := f.WritevAt(bufs, off); err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		for _, b := range bufs {
			off += int64(copy(want[off:], b))
		}
	}
	put(4096, bufs...)
	put(100, raw[7:7+300])             // misaligned offset and length
	aligned := make([]byte, 8192+4096) // aligned buffer: the direct path
	a := aligned[4096-int(uintptr(unsafe.Pointer(&aligned[0]))%4096):][:4096]
	copy(a, raw[2000:])
	put(8192, a)
	check := func(how string) {
		t.Helper()
		back := make([]byte, 1<<16+5)
		if n, err := f.ReadAt(back[5:], 0); err != nil || n != 1<<16 || !bytes.Equal(back[5:], want) {
			t.Fatalf("%s: misaligned read of the whole image: %d %v", how, n, err)
		}
		ba := aligned[4096-int(uintptr(unsafe.Pointer(&aligned[0]))%4096):][:8192]
		if err := f.ReadvAt([][]byte{ba}, 4096); err != nil || !bytes.Equal(ba, want[4096:4096+8192]) {
			t.Fatalf("%s: aligned read: %v", how, err)
		}
		plain, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(plain, want) {
			t.Fatalf("%s: the image holds other bytes (%v)", how, err)
		}
	}
	check("after the writes")
	put(0, a) // a direct write over the range written through the twin
	check("after a direct write over buffered data")
}

// TestKill9LosesNoCompletedWrite: a back-end process serving an image file
// is killed with SIGKILL in the middle of a random write load; every write
// it completed (published in the used ring) is in the image afterwards.
func TestKill9LosesNoCompletedWrite(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 16<<20)
	sock := filepath.Join(t.TempDir(), "vu.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBackend$")
	cmd.Env = append(os.Environ(), "SECAAS_VHOST_HELPER="+img+","+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var c net.Conn
	var err error
	for i := 0; i < 200; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	f := frontOn(t, c.(*net.UnixConn), nil)
	f.setup()
	acked := map[int64]byte{} // 4 KiB block -> pattern
	rng := rand.New(rand.NewPCG(4, 4))
	killAt := 200 + rng.IntN(200)
	hdrAt, dataAt, statusAt := uint64(bufGPA), uint64(bufGPA+0x1000), uint64(bufGPA+0x8000)
	for i := 0; ; i++ {
		if i == killAt {
			cmd.Process.Signal(syscall.SIGKILL)
		}
		blk := int64(rng.IntN(4096))
		pat := byte(1 + rng.IntN(250))
		copy(f.ram[hdrAt:], header(blkOut, uint64(blk*8)))
		copy(f.ram[dataAt:dataAt+4096], bytes.Repeat([]byte{pat}, 4096))
		f.ram[statusAt] = 0xff
		f.submit(buf{hdrAt, 16, false}, buf{dataAt, 4096, false}, buf{statusAt, 1, true})
		deadline := time.Now().Add(2 * time.Second)
		for binary.LittleEndian.Uint16(f.ram[usedGPA+2:]) != f.avail && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		if binary.LittleEndian.Uint16(f.ram[usedGPA+2:]) != f.avail {
			break // the back-end died: this write was not completed
		}
		if f.ram[statusAt] != statusOK {
			t.Fatalf("write %d: status %d", i, f.ram[statusAt])
		}
		acked[blk] = pat
	}
	cmd.Wait()
	disk, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for blk, pat := range acked {
		if !bytes.Equal(disk[blk*4096:(blk+1)*4096], bytes.Repeat([]byte{pat}, 4096)) {
			t.Fatalf("block %d: completed pattern %#x lost (got %#x)", blk, pat, disk[blk*4096])
		}
	}
	if len(acked) < 100 {
		t.Fatalf("only %d writes completed before the kill", len(acked))
	}
	t.Logf("%d writes completed before SIGKILL, all in the image", len(acked))
}

// TestHelperBackend is the back-end process of TestKill9LosesNoCompletedWrite.
func TestHelperBackend(t *testing.T) {
	spec := os.Getenv("SECAAS_VHOST_HELPER")
	if spec == "" {
		t.Skip("helper process only")
	}
	img, sock, _ := strings.Cut(spec, ",")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := fh.Stat()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	(&BlockServer{Size: st.Size(), Backend: File{File: fh}}).Serve(ln)
}

// TestDisableHoldsRequests: a disabled queue serves nothing; enabled
// again, it serves what waited in the ring.
func TestDisableHoldsRequests(t *testing.T) {
	disk := &memDisk{b: make([]byte, 1<<20)}
	f := newFront(t, &BlockServer{Size: int64(len(disk.b)), Backend: disk})
	f.setup()
	f.send(reqSetVringEnable, state(0, 0))
	f.send(reqGetQueueNum, nil) // a round trip: the disable has been handled
	f.reply(reqGetQueueNum)
	copy(f.ram[bufGPA:], header(blkFlush, 0))
	f.submit(buf{bufGPA, 16, false}, buf{bufGPA + 0x100, 1, true})
	time.Sleep(50 * time.Millisecond)
	if _, syncs := disk.snapshot(); binary.LittleEndian.Uint16(f.ram[usedGPA+2:]) != 0 || syncs != 0 {
		t.Fatalf("a disabled queue served a request (%d syncs)", syncs)
	}
	f.send(reqSetVringEnable, state(0, 1))
	f.wait(1)
	if _, syncs := disk.snapshot(); syncs != 1 {
		t.Fatalf("%d syncs after enabling", syncs)
	}
}

// TestPollingSuppressesKicks: with Poll set, the device asks the guest not
// to kick right after a request, serves what comes in without a kick, and
// asks for kicks again once idle; requests are served in every phase.
func TestPollingSuppressesKicks(t *testing.T) {
	disk := &memDisk{b: make([]byte, 1<<20)}
	f := newFront(t, &BlockServer{Size: int64(len(disk.b)), Backend: disk, Poll: 300 * time.Millisecond})
	f.setup()
	usedFlags := func() uint32 { return atomic.LoadUint32((*uint32)(unsafe.Pointer(&f.ram[usedGPA]))) & 0xffff }
	write := func(n uint16, sec uint64, fill byte) {
		t.Helper()
		copy(f.ram[0x10000:], header(blkOut, sec))
		for i := range 512 {
			f.ram[0x11000+i] = fill
		}
		f.submit(buf{0x10000, 16, false}, buf{0x11000, 512, false}, buf{0x12000, 1, true})
		f.wait(n)
		if st := f.ram[0x12000]; st != statusOK {
			t.Fatalf("request %d: status %d", n, st)
		}
	}
	write(1, 0, 1)
	if f.kicks != 1 {
		t.Fatalf("%d kicks for the first request", f.kicks)
	}
	if usedFlags()&usedNoNotify == 0 {
		t.Fatal("the device does not poll after a request")
	}
	for i := range 20 { // back to back: no kick needed
		write(uint16(2+i), uint64(1+i), byte(2+i))
	}
	if f.kicks != 1 {
		t.Fatalf("%d kicks while the device polled", f.kicks)
	}
	deadline := time.Now().Add(5 * time.Second)
	for usedFlags()&usedNoNotify != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the device never stops polling")
		}
		time.Sleep(10 * time.Millisecond)
	}
	write(22, 30, 0x7f) // asleep: this one must kick
	if f.kicks != 2 {
		t.Fatalf("%d kicks, want 2", f.kicks)
	}
	disk.mu.Lock()
	defer disk.mu.Unlock()
	for i := range 22 {
		sec := uint64(i)
		want := byte(1 + i)
		if i == 21 {
			sec, want = 30, 0x7f
		}
		if got := disk.b[sec*512]; got != want {
			t.Fatalf("sector %d holds %d, want %d", sec, got, want)
		}
	}
}

// TestPollingLetsMessagesThrough: a worker that polls must not hold up the
// front-end's messages (SET_VRING_CALL waits for the worker's lock) for
// the whole polling time.
func TestPollingLetsMessagesThrough(t *testing.T) {
	disk := &memDisk{b: make([]byte, 1<<20)}
	f := newFront(t, &BlockServer{Size: int64(len(disk.b)), Backend: disk, Poll: 3 * time.Second})
	f.setup()
	copy(f.ram[0x10000:], header(blkOut, 0))
	f.submit(buf{0x10000, 16, false}, buf{0x11000, 512, false}, buf{0x12000, 1, true})
	f.wait(1) // the worker now polls for 3 s
	t0 := time.Now()
	f.send(reqSetVringCall, u64Bytes(0), f.call)
	f.send(reqGetFeatures, nil)
	f.reply(reqGetFeatures)
	if d := time.Since(t0); d > 1500*time.Millisecond {
		t.Fatalf("SET_VRING_CALL took %v while the worker polled", d)
	}
	copy(f.ram[0x10000:], header(blkOut, 1))
	f.submit(buf{0x10000, 16, false}, buf{0x11000, 512, false}, buf{0x12000, 1, true})
	f.wait(2)
}
