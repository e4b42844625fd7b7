package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
)

// Client is a connection to one NBD export. Requests are serialised (one
// in flight): simple, and enough for HyperAV's reads and status queries.
type Client struct {
	conn       net.Conn
	rd         *bufio.Reader
	mu         sync.Mutex
	cookie     uint64
	Size       int64
	Flags      uint16
	structured bool
	contexts   map[string]uint32 // meta context name -> id
}

// Dial connects to an NBD server on a unix socket (or "tcp:host:port"),
// negotiates structured replies and the given meta contexts, and opens the
// export.
func Dial(ctx context.Context, addr, export string, metaContexts ...string) (*Client, error) {
	network := "unix"
	if len(addr) > 4 && addr[:4] == "tcp:" {
		network, addr = "tcp", addr[4:]
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	c := &Client{conn: conn, rd: bufio.NewReaderSize(conn, 256<<10), contexts: map[string]uint32{}}
	if err := c.handshake(export, metaContexts); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(timeZero)
	return c, nil
}

func (c *Client) handshake(export string, metas []string) error {
	var hdr [18]byte
	if _, err := io.ReadFull(c.rd, hdr[:]); err != nil {
		return fmt.Errorf("nbd handshake: %w", err)
	}
	be := binary.BigEndian
	if be.Uint64(hdr[0:]) != magicInit || be.Uint64(hdr[8:]) != magicOpt {
		return protoErr("not a newstyle NBD server")
	}
	hflags := be.Uint16(hdr[16:])
	if hflags&flagFixedNewstyle == 0 {
		return protoErr("server is not fixed-newstyle")
	}
	cflags := uint32(flagFixedNewstyle)
	if hflags&flagNoZeroes != 0 {
		cflags |= flagNoZeroes
	}
	if err := binary.Write(c.conn, binary.BigEndian, cflags); err != nil {
		return err
	}
	// Structured replies (needed for block status).
	if err := c.sendOpt(optStructuredReply, nil); err != nil {
		return err
	}
	typ, _, err := c.readOptReply(optStructuredReply)
	if err != nil {
		return err
	}
	c.structured = typ == repAck
	if len(metas) > 0 {
		if !c.structured {
			return protoErr("server refused structured replies: no meta contexts")
		}
		data := appendString32(nil, export)
		data = be.AppendUint32(data, uint32(len(metas)))
		for _, m := range metas {
			data = appendString32(data, m)
		}
		if err := c.sendOpt(optSetMetaContext, data); err != nil {
			return err
		}
		for {
			typ, payload, err := c.readOptReply(optSetMetaContext)
			if err != nil {
				return err
			}
			if typ == repAck {
				break
			}
			if typ != repMetaContext || len(payload) < 4 {
				return protoErr("meta context reply type %#x", typ)
			}
			c.contexts[string(payload[4:])] = be.Uint32(payload)
		}
		for _, m := range metas {
			if _, ok := c.contexts[m]; !ok {
				return fmt.Errorf("nbd: the server does not offer meta context %q", m)
			}
		}
	}
	data := appendString32(nil, export)
	data = be.AppendUint16(data, 0) // no extra information requests
	if err := c.sendOpt(optGo, data); err != nil {
		return err
	}
	for {
		typ, payload, err := c.readOptReply(optGo)
		if err != nil {
			return err
		}
		if typ == repAck {
			break
		}
		if typ == repInfo && len(payload) >= 12 && be.Uint16(payload) == infoExport {
			c.Size = int64(be.Uint64(payload[2:]))
			c.Flags = be.Uint16(payload[10:])
		}
	}
	if c.Size < 0 {
		return protoErr("export size %d", c.Size)
	}
	return nil
}

func appendString32(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func (c *Client) sendOpt(opt uint32, data []byte) error {
	b := binary.BigEndian.AppendUint64(nil, magicOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	_, err := c.conn.Write(append(b, data...))
	return err
}

// readOptReply reads one option reply; an error reply becomes an error.
func (c *Client) readOptReply(opt uint32) (uint32, []byte, error) {
	var h [20]byte
	if _, err := io.ReadFull(c.rd, h[:]); err != nil {
		return 0, nil, fmt.Errorf("nbd option %d: %w", opt, err)
	}
	be := binary.BigEndian
	if be.Uint64(h[:]) != magicOptReply || be.Uint32(h[8:]) != opt {
		return 0, nil, protoErr("bad option reply to %d", opt)
	}
	typ, n := be.Uint32(h[12:]), be.Uint32(h[16:])
	if n > maxOptLen {
		return 0, nil, protoErr("option reply of %d bytes", n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.rd, payload); err != nil {
		return 0, nil, err
	}
	if typ&repErrBit != 0 {
		if opt == optStructuredReply && typ == repErrUnsup {
			return typ, payload, nil
		}
		return typ, payload, fmt.Errorf("nbd: option %d refused (%#x): %s", opt, typ, payload)
	}
	return typ, payload, nil
}

// request sends a request and reads its replies, passing each structured
// chunk (or the simple reply's data) to onChunk.
func (c *Client) request(typ uint16, flags uint16, off int64, length uint32, data []byte, onChunk func(ctype uint16, payload []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cookie++
	be := binary.BigEndian
	req := make([]byte, 28, 28+len(data))
	be.PutUint32(req, magicRequest)
	be.PutUint16(req[4:], flags)
	be.PutUint16(req[6:], typ)
	be.PutUint64(req[8:], c.cookie)
	be.PutUint64(req[16:], uint64(off))
	be.PutUint32(req[24:], length)
	if _, err := c.conn.Write(append(req, data...)); err != nil {
		return err
	}
	for {
		var m [4]byte
		if _, err := io.ReadFull(c.rd, m[:]); err != nil {
			return err
		}
		switch be.Uint32(m[:]) {
		case magicSimple:
			var h [12]byte
			if _, err := io.ReadFull(c.rd, h[:]); err != nil {
				return err
			}
			if be.Uint64(h[4:]) != c.cookie {
				return protoErr("reply for cookie %d, expected %d", be.Uint64(h[4:]), c.cookie)
			}
			if e := be.Uint32(h[:]); e != 0 {
				return &Error{Errno: e}
			}
			if typ == cmdRead {
				buf := make([]byte, length)
				if _, err := io.ReadFull(c.rd, buf); err != nil {
					return err
				}
				return onChunk(replyOffsetData, append(be.AppendUint64(nil, uint64(off)), buf...))
			}
			return nil
		case magicStructured:
			var h [16]byte
			if _, err := io.ReadFull(c.rd, h[:]); err != nil {
				return err
			}
			rflags, rtype, cookie, n := be.Uint16(h[:]), be.Uint16(h[2:]), be.Uint64(h[4:]), be.Uint32(h[12:])
			if cookie != c.cookie {
				return protoErr("reply for cookie %d, expected %d", cookie, c.cookie)
			}
			if n > MaxPayload+64 {
				return protoErr("reply chunk of %d bytes", n)
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(c.rd, payload); err != nil {
				return err
			}
			if rtype&(1<<15) != 0 {
				return parseErrorChunk(payload)
			}
			if rtype != replyNone {
				if err := onChunk(rtype, payload); err != nil {
					return err
				}
			}
			if rflags&replyFlagDone != 0 {
				return nil
			}
		default:
			return protoErr("bad reply magic %#x", be.Uint32(m[:]))
		}
	}
}

func parseErrorChunk(p []byte) error {
	if len(p) < 6 {
		return protoErr("short error chunk")
	}
	e := &Error{Errno: binary.BigEndian.Uint32(p)}
	n := int(binary.BigEndian.Uint16(p[4:]))
	if 6+n <= len(p) {
		e.Msg = string(p[6 : 6+n])
	}
	return e
}

// ReadAt reads from the export (in requests of at most 32 MiB).
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= c.Size {
		return 0, io.EOF
	}
	want := p
	if off+int64(len(p)) > c.Size {
		want = p[:c.Size-off]
	}
	done := 0
	for done < len(want) {
		n := min(len(want)-done, MaxPayload)
		base := off + int64(done)
		err := c.request(cmdRead, 0, base, uint32(n), nil, func(ctype uint16, payload []byte) error {
			if len(payload) < 8 {
				return protoErr("short read chunk")
			}
			at := int64(binary.BigEndian.Uint64(payload)) - base
			switch ctype {
			case replyOffsetData:
				data := payload[8:]
				if at < 0 || at+int64(len(data)) > int64(n) {
					return protoErr("read chunk outside the request")
				}
				copy(want[done+int(at):], data)
			case replyOffsetHole:
				if len(payload) < 12 {
					return protoErr("short hole chunk")
				}
				hole := int64(binary.BigEndian.Uint32(payload[8:]))
				if at < 0 || at+hole > int64(n) {
					return protoErr("hole outside the request")
				}
				clear(want[done+int(at) : done+int(at+hole)])
			default:
				return protoErr("unexpected chunk type %d to a read", ctype)
			}
			return nil
		})
		if err != nil {
			return done, err
		}
		done += n
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(p), nil
}

// Extent is one block-status descriptor.
type Extent struct {
	Offset int64
	Length int64
	Flags  uint32
}

// BlockStatus returns the extents of a meta context over [off, off+length),
// following the server's replies until the range is covered.
func (c *Client) BlockStatus(metaContext string, off, length int64) ([]Extent, error) {
	id, ok := c.contexts[metaContext]
	if !ok {
		return nil, fmt.Errorf("nbd: meta context %q was not negotiated", metaContext)
	}
	end := min(off+length, c.Size)
	var out []Extent
	for pos := off; pos < end; {
		n := uint32(min(end-pos, 1<<30))
		advanced := int64(0)
		err := c.request(cmdBlockStatus, 0, pos, n, nil, func(ctype uint16, p []byte) error {
			if ctype != replyBlockStatus || len(p) < 4 || (len(p)-4)%8 != 0 {
				return protoErr("bad block status chunk")
			}
			if binary.BigEndian.Uint32(p) != id {
				return nil // another context
			}
			at := pos
			for i := 4; i < len(p); i += 8 {
				l := int64(binary.BigEndian.Uint32(p[i:]))
				if l == 0 {
					return protoErr("zero-length extent")
				}
				l = min(l, end-at)
				if l <= 0 {
					break
				}
				out = append(out, Extent{Offset: at, Length: l, Flags: binary.BigEndian.Uint32(p[i+4:])})
				at += l
			}
			advanced = at - pos
			return nil
		})
		if err != nil {
			return out, err
		}
		if advanced == 0 {
			return out, protoErr("block status made no progress at %d", pos)
		}
		pos += advanced
	}
	return out, nil
}

// Close says goodbye and closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	be := binary.BigEndian
	req := make([]byte, 28)
	be.PutUint32(req, magicRequest)
	be.PutUint16(req[6:], cmdDisc)
	c.conn.Write(req)
	c.mu.Unlock()
	return c.conn.Close()
}

// WriteAt writes to the export (in requests of at most 32 MiB); with fua
// the server puts each on stable storage before acknowledging it.
func (c *Client) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n := min(len(p)-done, MaxPayload)
		if err := c.request(cmdWrite, 0, off+int64(done), uint32(n), p[done:done+n], nil); err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// Flush asks the server to put every acknowledged write on stable storage.
func (c *Client) Flush() error {
	return c.request(cmdFlush, 0, 0, 0, nil, nil)
}
