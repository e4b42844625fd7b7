package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Link types (LINKTYPE_* of the pcap specification).
const (
	LinkNull     = 0   // BSD loopback
	LinkEthernet = 1   //
	LinkRaw      = 101 // raw IPv4/IPv6
	LinkLinuxSLL = 113 // Linux cooked capture v1
	LinkIPv4     = 228
	LinkIPv6     = 229
	LinkLinuxSL2 = 276 // Linux cooked capture v2
	linkRawAlt   = 12  // LINKTYPE_RAW on some BSDs
)

// MaxPacket bounds one captured packet; larger records are format errors.
const MaxPacket = 256 << 10

// Packet is one captured frame. Data is valid until the next call to Next.
type Packet struct {
	Time     int64 // nanoseconds since the Unix epoch
	Data     []byte
	OrigLen  int
	LinkType int
}

// Reader yields packets until io.EOF.
type Reader interface {
	Next() (Packet, error)
}

// FormatError is a malformed capture, with the byte offset of the problem.
type FormatError struct {
	Offset int64
	Msg    string
	Err    error // ErrTruncated when the file ends inside a record
}

func (e *FormatError) Error() string { return fmt.Sprintf("capture: offset %d: %s", e.Offset, e.Msg) }

// Unwrap gives errors.Is access to ErrTruncated.
func (e *FormatError) Unwrap() error { return e.Err }

// ErrTruncated is wrapped by a FormatError when a file ends inside a record.
var ErrTruncated = errors.New("truncated")

// countingReader knows how far it is into the file.
type countingReader struct {
	r   *bufio.Reader
	off int64
}

func (c *countingReader) full(b []byte) error {
	n, err := io.ReadFull(c.r, b)
	c.off += int64(n)
	return err
}

// NewReader detects pcap or pcapng from the first bytes of r.
func NewReader(r io.Reader) (Reader, error) {
	cr := &countingReader{r: bufio.NewReaderSize(r, 1<<16)}
	magic, err := cr.r.Peek(4)
	if err != nil {
		return nil, &FormatError{0, "too short for a capture file", nil}
	}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		return newPcap(cr)
	case 0x0a0d0d0a:
		return newPcapng(cr)
	}
	return nil, &FormatError{0, fmt.Sprintf("unknown magic % x: neither pcap nor pcapng", magic), nil}
}

// pcapReader reads classic pcap.
type pcapReader struct {
	r        *countingReader
	bo       binary.ByteOrder
	nanos    bool
	linkType int
	snap     uint32
	hdr      [16]byte
	buf      []byte
}

func newPcap(r *countingReader) (*pcapReader, error) {
	var h [24]byte
	if err := r.full(h[:]); err != nil {
		return nil, &FormatError{r.off, "pcap file header truncated", ErrTruncated}
	}
	p := &pcapReader{r: r, buf: make([]byte, 0, 2048)}
	switch binary.LittleEndian.Uint32(h[:4]) {
	case 0xa1b2c3d4:
		p.bo = binary.LittleEndian
	case 0xd4c3b2a1:
		p.bo = binary.BigEndian
	case 0xa1b23c4d:
		p.bo, p.nanos = binary.LittleEndian, true
	case 0x4d3cb2a1:
		p.bo, p.nanos = binary.BigEndian, true
	}
	p.snap = p.bo.Uint32(h[16:20])
	p.linkType = int(p.bo.Uint32(h[20:24]) & 0x0fffffff)
	return p, nil
}

func (p *pcapReader) Next() (Packet, error) {
	start := p.r.off
	if err := p.r.full(p.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Packet{}, io.EOF
		}
		return Packet{}, &FormatError{start, "record header truncated", ErrTruncated}
	}
	sec, frac := p.bo.Uint32(p.hdr[0:4]), p.bo.Uint32(p.hdr[4:8])
	caplen, orig := p.bo.Uint32(p.hdr[8:12]), p.bo.Uint32(p.hdr[12:16])
	if caplen > MaxPacket {
		return Packet{}, &FormatError{start, fmt.Sprintf("record of %d bytes exceeds %d", caplen, MaxPacket), nil}
	}
	if !p.nanos {
		if frac >= 1e6 {
			return Packet{}, &FormatError{start, fmt.Sprintf("microseconds %d out of range", frac), nil}
		}
		frac *= 1000
	} else if frac >= 1e9 {
		return Packet{}, &FormatError{start, fmt.Sprintf("nanoseconds %d out of range", frac), nil}
	}
	if cap(p.buf) < int(caplen) {
		p.buf = make([]byte, caplen)
	}
	p.buf = p.buf[:caplen]
	if err := p.r.full(p.buf); err != nil {
		return Packet{}, &FormatError{p.r.off, fmt.Sprintf("packet data truncated (%d bytes announced)", caplen), ErrTruncated}
	}
	return Packet{Time: int64(sec)*1e9 + int64(frac), Data: p.buf, OrigLen: int(orig), LinkType: p.linkType}, nil
}

// pcapngReader reads pcapng sections, interfaces and packet blocks.
type pcapngReader struct {
	r      *countingReader
	bo     binary.ByteOrder
	ifaces []iface
	hdr    [8]byte
	buf    []byte
}

type iface struct {
	linkType int
	snap     uint32
	// timestamp unit: ts * mul / div nanoseconds
	mul, div int64
}

// MaxBlock bounds a pcapng block.
const MaxBlock = MaxPacket + 64<<10

func newPcapng(r *countingReader) (*pcapngReader, error) {
	return &pcapngReader{r: r, buf: make([]byte, 0, 4096)}, nil
}

func (p *pcapngReader) Next() (Packet, error) {
	for {
		start := p.r.off
		if err := p.r.full(p.hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return Packet{}, io.EOF
			}
			return Packet{}, &FormatError{start, "block header truncated", ErrTruncated}
		}
		typ := binary.LittleEndian.Uint32(p.hdr[0:4])
		if typ == 0x0a0d0d0a { // section header: byte order comes from its body
			if err := p.section(start); err != nil {
				return Packet{}, err
			}
			continue
		}
		if p.bo == nil {
			return Packet{}, &FormatError{start, "block before the section header", nil}
		}
		typ = p.bo.Uint32(p.hdr[0:4])
		total := p.bo.Uint32(p.hdr[4:8])
		if total < 12 || total%4 != 0 || total > MaxBlock {
			return Packet{}, &FormatError{start, fmt.Sprintf("block length %d is invalid", total), nil}
		}
		body, err := p.body(start, int(total)-8)
		if err != nil {
			return Packet{}, err
		}
		switch typ {
		case 1: // interface description
			if err := p.iface(start, body); err != nil {
				return Packet{}, err
			}
		case 6: // enhanced packet
			if len(body) < 20 {
				return Packet{}, &FormatError{start, "enhanced packet block too short", nil}
			}
			return p.packet(start, p.bo.Uint32(body[0:4]), body)
		case 3: // simple packet: interface 0, no timestamp
			if len(body) < 4 {
				return Packet{}, &FormatError{start, "simple packet block too short", nil}
			}
			ifc, err := p.lookup(start, 0)
			if err != nil {
				return Packet{}, err
			}
			orig := p.bo.Uint32(body[0:4])
			n := min(int(orig), len(body)-4)
			if ifc.snap > 0 {
				n = min(n, int(ifc.snap))
			}
			return Packet{Data: body[4 : 4+n], OrigLen: int(orig), LinkType: ifc.linkType}, nil
		case 2: // obsolete packet block
			if len(body) < 20 {
				return Packet{}, &FormatError{start, "packet block too short", nil}
			}
			return p.packet(start, uint32(p.bo.Uint16(body[0:2])), body)
		}
		// Other blocks (statistics, name resolution, custom): skipped.
	}
}

// packet decodes the common tail of enhanced and obsolete packet blocks:
// timestamp, captured and original length, data.
func (p *pcapngReader) packet(start int64, id uint32, body []byte) (Packet, error) {
	ts := int64(p.bo.Uint32(body[4:8]))<<32 | int64(p.bo.Uint32(body[8:12]))
	caplen, orig := p.bo.Uint32(body[12:16]), p.bo.Uint32(body[16:20])
	if int(caplen) > len(body)-20 {
		return Packet{}, &FormatError{start, fmt.Sprintf("captured length %d exceeds the block", caplen), nil}
	}
	ifc, err := p.lookup(start, id)
	if err != nil {
		return Packet{}, err
	}
	return Packet{Time: ifc.nanos(ts), Data: body[20 : 20+caplen], OrigLen: int(orig), LinkType: ifc.linkType}, nil
}

// body reads a block's body and checks the trailing length copy.
func (p *pcapngReader) body(start int64, n int) ([]byte, error) {
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	b := p.buf[:n]
	if err := p.r.full(b); err != nil {
		return nil, &FormatError{p.r.off, "block body truncated", ErrTruncated}
	}
	if trail := p.bo.Uint32(b[n-4:]); int(trail) != n+8 {
		return nil, &FormatError{start, fmt.Sprintf("block length %d does not match its trailer %d", n+8, trail), nil}
	}
	return b[:n-4], nil
}

func (p *pcapngReader) section(start int64) error {
	var bom [4]byte
	if err := p.r.full(bom[:]); err != nil {
		return &FormatError{p.r.off, "section header truncated", ErrTruncated}
	}
	switch binary.LittleEndian.Uint32(bom[:]) {
	case 0x1a2b3c4d:
		p.bo = binary.LittleEndian
	case 0x4d3c2b1a:
		p.bo = binary.BigEndian
	default:
		return &FormatError{start + 8, "bad byte-order magic in section header", nil}
	}
	total := p.bo.Uint32(p.hdr[4:8])
	if total < 28 || total%4 != 0 || total > MaxBlock {
		return &FormatError{start, fmt.Sprintf("section header length %d is invalid", total), nil}
	}
	// Version and section length, options, trailer: skip, check trailer.
	if _, err := p.body(start, int(total)-12); err != nil {
		return err
	}
	p.ifaces = p.ifaces[:0] // interfaces are per section
	return nil
}

func (p *pcapngReader) iface(start int64, b []byte) error {
	if len(b) < 8 {
		return &FormatError{start, "interface description block too short", nil}
	}
	if len(p.ifaces) >= 1024 {
		return &FormatError{start, "more than 1024 interfaces", nil}
	}
	ifc := iface{linkType: int(p.bo.Uint16(b[0:2])), snap: p.bo.Uint32(b[4:8]), mul: 1000, div: 1} // default: microseconds
	opts := b[8:]
	for len(opts) >= 4 {
		code, l := p.bo.Uint16(opts[0:2]), int(p.bo.Uint16(opts[2:4]))
		if code == 0 {
			break
		}
		if 4+l > len(opts) {
			return &FormatError{start, "interface option runs past the block", nil}
		}
		if code == 9 && l >= 1 { // if_tsresol
			v := opts[4]
			exp := int64(v & 0x7f)
			if v&0x80 == 0 { // 10^-exp seconds
				if exp > 18 {
					return &FormatError{start, fmt.Sprintf("timestamp resolution 10^-%d unsupported", exp), nil}
				}
				unit := int64(1)
				for i := int64(0); i < exp; i++ {
					unit *= 10
				}
				if unit <= 1e9 {
					ifc.mul, ifc.div = 1e9/unit, 1
				} else {
					ifc.mul, ifc.div = 1, unit/1e9
				}
			} else { // 2^-exp seconds
				if exp > 62 {
					return &FormatError{start, fmt.Sprintf("timestamp resolution 2^-%d unsupported", exp), nil}
				}
				ifc.mul, ifc.div = 1e9, int64(1)<<exp
			}
		}
		opts = opts[4+(l+3)&^3:]
	}
	p.ifaces = append(p.ifaces, ifc)
	return nil
}

func (p *pcapngReader) lookup(start int64, id uint32) (*iface, error) {
	if int(id) >= len(p.ifaces) {
		return nil, &FormatError{start, fmt.Sprintf("packet of undeclared interface %d", id), nil}
	}
	return &p.ifaces[id], nil
}

func (f *iface) nanos(ts int64) int64 {
	if f.div == 1 {
		return ts * f.mul
	}
	if f.mul == 1 {
		return ts / f.div
	}
	// 2^-exp: split to avoid overflow.
	sec := ts / f.div
	rem := ts % f.div
	return sec*1e9 + rem*f.mul/f.div
}
