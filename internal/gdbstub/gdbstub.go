package gdbstub

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrTimeout: the stub did not answer in time.
var ErrTimeout = errors.New("gdbstub: no answer in time")

// Client speaks the GDB remote serial protocol to one stub (QEMU's
// -gdb), all-stop, with acknowledgements. Methods other than Continue
// need the target stopped (as it is after Dial, Interrupt and a stop).
type Client struct {
	mu       sync.Mutex
	conn     net.Conn
	r        *bufio.Reader
	timeout  time.Duration
	regs     []register // the 'g' packet's layout, from the target description
	chunk    int        // bytes of memory per packet
	detached bool
	// Stop is the target's state as Dial found it (the stub stops it).
	Stop StopReply
}

// register is one register of the 'g' packet.
type register struct {
	name   string
	offset int // bytes into 'g'
	size   int // bytes
}

// maxPacket bounds a reply.
const maxPacket = 1 << 20

// Dial connects to a stub at addr ("unix" or "tcp" network), which stops
// the target, reads the target description (so that registers have
// names), and asks why it stopped. Every exchange after is bounded by
// timeout.
func Dial(ctx context.Context, network, addr string, timeout time.Duration) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("gdbstub: %w", err)
	}
	return NewClient(conn, timeout)
}

// NewClient speaks to a stub over conn (connected by the caller, e.g.
// beneath a host root); it closes conn when the handshake fails.
func NewClient(conn net.Conn, timeout time.Duration) (*Client, error) {
	c := &Client{conn: conn, r: bufio.NewReader(conn), timeout: timeout}
	if err := c.handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) handshake() error {
	// A stub may greet with an unsolicited stop reply: take what comes
	// within a moment.
	c.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		if _, err := c.recv(); err != nil {
			break
		}
	}
	sup, err := c.exchange("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386")
	if err != nil {
		return err
	}
	// Memory moves in chunks that fit the stub's packets: two hex digits
	// a byte, with room for the command.
	c.chunk = defaultChunk
	for _, f := range strings.Split(sup, ";") {
		if v, ok := strings.CutPrefix(f, "PacketSize="); ok {
			if n, err := strconv.ParseUint(v, 16, 32); err == nil && n >= 128 {
				c.chunk = min(int(n-64)/2, maxChunk)
			}
		}
	}
	if err := c.readDescription(); err != nil {
		return err
	}
	r, err := c.exchange("?")
	if err != nil {
		return err
	}
	c.Stop = parseStop(r)
	return nil
}

// deadline arms the connection's deadline for one exchange.
func (c *Client) deadline() { c.conn.SetDeadline(time.Now().Add(c.timeout)) }

func checksum(s string) byte {
	var sum byte
	for i := 0; i < len(s); i++ {
		sum += s[i]
	}
	return sum
}

// send writes one packet and waits for its acknowledgement (resending
// on '-', at most 3 times).
func (c *Client) send(data string) error {
	pkt := fmt.Sprintf("$%s#%02x", data, checksum(data))
	for try := 0; try < 3; try++ {
		if _, err := io.WriteString(c.conn, pkt); err != nil {
			return c.err(err)
		}
		for {
			b, err := c.r.ReadByte()
			if err != nil {
				return c.err(err)
			}
			if b == '+' {
				return nil
			}
			if b == '-' {
				break
			}
			// Anything else before the ack (a stray byte): skip it.
		}
	}
	return errors.New("gdbstub: packet refused three times")
}

// recv reads one packet, checks and acknowledges it, and decodes its
// escapes and run lengths.
func (c *Client) recv() (string, error) {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", c.err(err)
		}
		if b == '$' {
			break
		}
	}
	var raw []byte
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", c.err(err)
		}
		if b == '#' {
			break
		}
		if len(raw) >= maxPacket {
			return "", errors.New("gdbstub: packet too long")
		}
		raw = append(raw, b)
	}
	var cs [2]byte
	if _, err := io.ReadFull(c.r, cs[:]); err != nil {
		return "", c.err(err)
	}
	want, err := strconv.ParseUint(string(cs[:]), 16, 8)
	if err != nil || byte(want) != checksum(string(raw)) {
		io.WriteString(c.conn, "-")
		return "", errors.New("gdbstub: bad checksum")
	}
	if _, err := io.WriteString(c.conn, "+"); err != nil {
		return "", c.err(err)
	}
	return decode(raw)
}

// decode undoes '}' escapes and '*' run lengths.
func decode(raw []byte) (string, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		switch b := raw[i]; b {
		case '}':
			if i+1 >= len(raw) {
				return "", errors.New("gdbstub: escape at the end of a packet")
			}
			i++
			out = append(out, raw[i]^0x20)
		case '*':
			if len(out) == 0 || i+1 >= len(raw) || raw[i+1] < 29 || raw[i+1] > 126 {
				return "", errors.New("gdbstub: bad run length")
			}
			i++
			n := int(raw[i]) - 29
			if len(out)+n > maxPacket {
				return "", errors.New("gdbstub: packet too long")
			}
			for k := 0; k < n; k++ {
				out = append(out, out[len(out)-1])
			}
		default:
			out = append(out, b)
		}
	}
	return string(out), nil
}

func (c *Client) err(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	return fmt.Errorf("gdbstub: %w", err)
}

// exchange sends a command and returns its reply.
func (c *Client) exchange(cmd string) (string, error) {
	c.deadline()
	if err := c.send(cmd); err != nil {
		return "", err
	}
	return c.recv()
}

// ok runs a command whose reply is "OK".
func (c *Client) ok(cmd string) error {
	r, err := c.exchange(cmd)
	if err != nil {
		return err
	}
	if r != "OK" {
		return fmt.Errorf("gdbstub: %s: %q", strings.SplitN(cmd, ":", 2)[0], r)
	}
	return nil
}

// xfer reads a whole qXfer object.
func (c *Client) xfer(object, annex string) ([]byte, error) {
	var out []byte
	for off := 0; off < 1<<20; {
		r, err := c.exchange(fmt.Sprintf("qXfer:%s:read:%s:%x,%x", object, annex, off, 0xffb))
		if err != nil {
			return nil, err
		}
		if r == "" || (r[0] != 'm' && r[0] != 'l') {
			return nil, fmt.Errorf("gdbstub: qXfer %s %s: %q", object, annex, r)
		}
		out = append(out, r[1:]...)
		off += len(r) - 1
		if r[0] == 'l' {
			return out, nil
		}
	}
	return nil, errors.New("gdbstub: qXfer object too large")
}

// targetXML is the part of a GDB target description the client uses.
type targetXML struct {
	Includes []struct {
		Href string `xml:"href,attr"`
	} `xml:"include"`
	Features []featureXML `xml:"feature"`
	Regs     []regXML     `xml:"reg"`
}

type featureXML struct {
	Includes []struct {
		Href string `xml:"href,attr"`
	} `xml:"include"`
	Regs []regXML `xml:"reg"`
}

type regXML struct {
	Name    string `xml:"name,attr"`
	Bitsize int    `xml:"bitsize,attr"`
	Regnum  string `xml:"regnum,attr"`
}

// readDescription reads target.xml and what it includes, and lays out
// the 'g' packet: the registers in order, each its bitsize wide.
func (c *Client) readDescription() error {
	var regs []regXML
	seen := map[string]bool{}
	var read func(annex string, depth int) error
	read = func(annex string, depth int) error {
		if depth > 4 || seen[annex] || len(seen) > 32 {
			return nil
		}
		seen[annex] = true
		b, err := c.xfer("features", annex)
		if err != nil {
			return err
		}
		var t targetXML
		if err := xml.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("gdbstub: %s: %w", annex, err)
		}
		regs = append(regs, t.Regs...)
		for _, f := range t.Features {
			regs = append(regs, f.Regs...)
			for _, in := range f.Includes {
				if err := read(in.Href, depth+1); err != nil {
					return err
				}
			}
		}
		for _, in := range t.Includes {
			if err := read(in.Href, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := read("target.xml", 0); err != nil {
		return err
	}
	off := 0
	for _, r := range regs {
		if r.Regnum != "" { // an explicit number starts a new run; keep order as given
			if _, err := strconv.Atoi(r.Regnum); err != nil {
				return fmt.Errorf("gdbstub: register %s: regnum %q", r.Name, r.Regnum)
			}
		}
		if r.Bitsize <= 0 || r.Bitsize%8 != 0 || r.Bitsize > 1024 {
			return fmt.Errorf("gdbstub: register %s: bitsize %d", r.Name, r.Bitsize)
		}
		c.regs = append(c.regs, register{name: r.Name, offset: off, size: r.Bitsize / 8})
		off += r.Bitsize / 8
	}
	if len(c.regs) == 0 {
		return errors.New("gdbstub: the target description names no register")
	}
	return nil
}

// Registers are one thread's registers as the 'g' packet carries them.
type Registers struct {
	raw    []byte
	layout []register
}

// Get returns a register of up to 8 bytes by name (rip, rsp, rax, cr3,
// ...).
func (r Registers) Get(name string) (uint64, bool) {
	for _, reg := range r.layout {
		if reg.name == name && reg.size <= 8 && reg.offset+reg.size <= len(r.raw) {
			var v uint64
			for i := reg.size - 1; i >= 0; i-- {
				v = v<<8 | uint64(r.raw[reg.offset+i])
			}
			return v, true
		}
	}
	return 0, false
}

// Set changes a register of up to 8 bytes by name.
func (r Registers) Set(name string, v uint64) error {
	for _, reg := range r.layout {
		if reg.name == name && reg.size <= 8 && reg.offset+reg.size <= len(r.raw) {
			for i := 0; i < reg.size; i++ {
				r.raw[reg.offset+i] = byte(v >> (8 * i))
			}
			return nil
		}
	}
	return fmt.Errorf("gdbstub: no register %q", name)
}

// Clone is an independent copy (to restore later).
func (r Registers) Clone() Registers {
	return Registers{raw: append([]byte(nil), r.raw...), layout: r.layout}
}

// ReadRegisters reads the selected thread's registers ('g').
func (c *Client) ReadRegisters() (Registers, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.exchange("g")
	if err != nil {
		return Registers{}, err
	}
	raw, err := hexBytes(r)
	if err != nil {
		return Registers{}, fmt.Errorf("gdbstub: g: %w", err)
	}
	return Registers{raw: raw, layout: c.regs}, nil
}

// WriteRegisters writes the selected thread's registers ('G').
func (c *Client) WriteRegisters(r Registers) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok("G" + hex.EncodeToString(r.raw))
}

// hexBytes decodes hex, where 'x' marks an unavailable byte (read as 0).
func hexBytes(s string) ([]byte, error) {
	if len(s) == 3 && s[0] == 'E' {
		return nil, fmt.Errorf("error %s", s)
	}
	return hex.DecodeString(strings.ReplaceAll(s, "x", "0"))
}

// Threads lists the target's threads (QEMU: one per vCPU, "p1.1", ...).
func (c *Client) Threads() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	r, err := c.exchange("qfThreadInfo")
	for ; err == nil && strings.HasPrefix(r, "m"); r, err = c.exchange("qsThreadInfo") {
		out = append(out, strings.Split(r[1:], ",")...)
		if len(out) > 4096 {
			return nil, errors.New("gdbstub: too many threads")
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SelectThread makes thread the one registers are read and written on.
func (c *Client) SelectThread(thread string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok("Hg" + thread)
}

// Memory per packet: what the stub's PacketSize allows (QEMU 7.2: 4096
// bytes, so 2016), at most maxChunk; defaultChunk when it does not say.
const (
	defaultChunk = 1000
	maxChunk     = 16 << 10
)

// ReadMemory reads n bytes of guest virtual memory at addr.
func (c *Client) ReadMemory(addr uint64, n int) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]byte, 0, n)
	for len(out) < n {
		k := min(c.chunk, n-len(out))
		r, err := c.exchange(fmt.Sprintf("m%x,%x", addr+uint64(len(out)), k))
		if err != nil {
			return nil, err
		}
		if len(r) == 3 && r[0] == 'E' || r == "" {
			return nil, fmt.Errorf("gdbstub: read %d bytes at %#x: %q", k, addr+uint64(len(out)), r)
		}
		b, err := hex.DecodeString(r)
		if err != nil || len(b) == 0 || len(b) > k {
			return nil, fmt.Errorf("gdbstub: read at %#x: bad reply", addr+uint64(len(out)))
		}
		out = append(out, b...)
	}
	return out, nil
}

// WriteMemory writes b to guest virtual memory at addr (QEMU writes
// read-only pages too).
func (c *Client) WriteMemory(addr uint64, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for off := 0; off < len(b); off += c.chunk {
		part := b[off:min(off+c.chunk, len(b))]
		if err := c.ok(fmt.Sprintf("M%x,%x:%s", addr+uint64(off), len(part), hex.EncodeToString(part))); err != nil {
			return err
		}
	}
	return nil
}

// Point kinds for SetPoint.
const (
	Software = 0 // int3 the stub manages (guest bytes look unchanged)
	Hardware = 1 // a debug-register breakpoint
	Write    = 2 // a write watchpoint over length bytes
)

// SetPoint sets a breakpoint or watchpoint ('Z').
func (c *Client) SetPoint(kind int, addr uint64, length int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok(fmt.Sprintf("Z%d,%x,%x", kind, addr, length))
}

// ClearPoint removes one ('z').
func (c *Client) ClearPoint(kind int, addr uint64, length int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok(fmt.Sprintf("z%d,%x,%x", kind, addr, length))
}

// StopReply is why the target stopped.
type StopReply struct {
	Signal int
	Thread string
	// Watch is the address a write watchpoint reported.
	Watch uint64
	// Exited: the target is gone ('W' or 'X').
	Exited bool
	Raw    string
}

func parseStop(r string) StopReply {
	s := StopReply{Raw: r}
	if len(r) < 3 {
		return s
	}
	sig, _ := strconv.ParseUint(r[1:3], 16, 8)
	s.Signal = int(sig)
	switch r[0] {
	case 'W', 'X':
		s.Exited = true
	case 'T':
		for _, kv := range strings.Split(r[3:], ";") {
			k, v, _ := strings.Cut(kv, ":")
			switch k {
			case "thread":
				s.Thread = v
			case "watch", "awatch", "rwatch":
				s.Watch, _ = strconv.ParseUint(v, 16, 64)
			}
		}
	}
	return s
}

// Continue resumes every vCPU and waits until the target stops (a
// breakpoint, a watchpoint) or ctx ends, when it interrupts the target.
// Either way the target is stopped when it returns without an error.
func (c *Client) Continue(ctx context.Context) (StopReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline()
	if err := c.send("c"); err != nil {
		return StopReply{}, err
	}
	c.conn.SetDeadline(time.Time{})
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			c.conn.Write([]byte{0x03}) // interrupt: the stub answers with a stop reply
		case <-done:
		}
	}()
	r, err := c.recv()
	if err != nil {
		return StopReply{}, err
	}
	return parseStop(r), nil
}

// Interrupt stops a running target (sent as Continue's ctx ends; this is
// for a target resumed by other means).
func (c *Client) Interrupt() (StopReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline()
	if _, err := c.conn.Write([]byte{0x03}); err != nil {
		return StopReply{}, c.err(err)
	}
	r, err := c.recv()
	return parseStop(r), err
}

// Detach lets the target run on without the client and closes the
// connection. Safe to call twice.
func (c *Client) Detach() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.detached {
		return nil
	}
	c.detached = true
	err := c.ok("D;1")
	if err != nil {
		err = c.ok("D") // a stub without the multiprocess form
	}
	c.conn.Close()
	return err
}

// Close detaches (the target keeps running) and closes.
func (c *Client) Close() error { return c.Detach() }
