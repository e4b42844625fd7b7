package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Backend is what an export serves: a disk image.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Server serves one export. Requests of a connection are handled in order
// (replies are simple replies, in order): every write is applied to the
// backend and reported to OnWrite before it is acknowledged, and FLUSH
// (and FUA) reach stable storage before theirs.
type Server struct {
	Export   string
	Size     int64
	Backend  Backend
	ReadOnly bool
	// OnWrite sees every applied write (off, length) before it is
	// acknowledged.
	OnWrite func(off, n int64)
	// Zero returns the parts of [off, off+n) that must read as zeros
	// (isolated sectors); nil for none.
	Zero func(off, n int64) []Extent
	Log  *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// Serve accepts connections until ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[net.Conn]bool{}
		}
		s.conns[c] = true
		s.mu.Unlock()
		go func() {
			if err := s.serveConn(c); err != nil && s.Log != nil {
				s.Log.Warn("nbd connection", "err", err)
			}
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// CloseConns drops every connection (the listener is the caller's).
func (s *Server) CloseConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) tflags() uint16 {
	f := uint16(tflagHasFlags | tflagSendFlush | tflagSendFUA)
	if s.ReadOnly {
		f |= tflagReadOnly
	}
	return f
}

func (s *Server) serveConn(conn net.Conn) error {
	rd := bufio.NewReaderSize(conn, 256<<10)
	wr := bufio.NewWriterSize(conn, 256<<10)
	be := binary.BigEndian
	hello := be.AppendUint64(nil, magicInit)
	hello = be.AppendUint64(hello, magicOpt)
	hello = be.AppendUint16(hello, flagFixedNewstyle|flagNoZeroes)
	if _, err := conn.Write(hello); err != nil {
		return err
	}
	var cf [4]byte
	if _, err := io.ReadFull(rd, cf[:]); err != nil {
		return err
	}
	cflags := be.Uint32(cf[:])
	if cflags&^uint32(flagFixedNewstyle|flagNoZeroes) != 0 {
		return protoErr("client flags %#x", cflags)
	}
	ok, err := s.negotiate(rd, conn, cflags&flagNoZeroes != 0)
	if err != nil || !ok {
		return err
	}
	return s.transmit(rd, wr)
}

// negotiate runs the option haggling; true means: go to transmission.
func (s *Server) negotiate(rd *bufio.Reader, w io.Writer, noZeroes bool) (bool, error) {
	be := binary.BigEndian
	reply := func(opt, typ uint32, data []byte) error {
		b := be.AppendUint64(nil, magicOptReply)
		b = be.AppendUint32(b, opt)
		b = be.AppendUint32(b, typ)
		b = be.AppendUint32(b, uint32(len(data)))
		_, err := w.Write(append(b, data...))
		return err
	}
	for {
		opt, data, err := ParseOption(rd)
		if err != nil {
			return false, err
		}
		switch opt {
		case optExportName:
			if string(data) != s.Export {
				return false, fmt.Errorf("nbd: unknown export %q", data)
			}
			b := be.AppendUint64(nil, uint64(s.Size))
			b = be.AppendUint16(b, s.tflags())
			if !noZeroes {
				b = append(b, make([]byte, 124)...)
			}
			_, err := w.Write(b)
			return err == nil, err
		case optGo, optInfo:
			name, ok := parseNameInfo(data)
			if !ok {
				if err := reply(opt, repErrInvalid, nil); err != nil {
					return false, err
				}
				continue
			}
			if name != s.Export && !(name == "" && s.Export == "") {
				if err := reply(opt, repErrUnknown, []byte("unknown export")); err != nil {
					return false, err
				}
				continue
			}
			info := be.AppendUint16(nil, infoExport)
			info = be.AppendUint64(info, uint64(s.Size))
			info = be.AppendUint16(info, s.tflags())
			if err := reply(opt, repInfo, info); err != nil {
				return false, err
			}
			if err := reply(opt, repAck, nil); err != nil {
				return false, err
			}
			if opt == optGo {
				return true, nil
			}
		case optAbort:
			reply(opt, repAck, nil)
			return false, nil
		case optList:
			if err := reply(opt, repServer, append(be.AppendUint32(nil, uint32(len(s.Export))), s.Export...)); err != nil {
				return false, err
			}
			if err := reply(opt, repAck, nil); err != nil {
				return false, err
			}
		default:
			// Structured replies and meta contexts are not offered: every
			// reply is a simple reply, in order.
			if err := reply(opt, repErrUnsup, nil); err != nil {
				return false, err
			}
		}
	}
}

// ParseOption reads one client option (bounded).
func ParseOption(r io.Reader) (uint32, []byte, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	be := binary.BigEndian
	if be.Uint64(h[:]) != magicOpt {
		return 0, nil, protoErr("bad option magic")
	}
	n := be.Uint32(h[12:])
	if n > maxOptLen {
		return 0, nil, protoErr("option of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, err
	}
	return be.Uint32(h[8:]), data, nil
}

func parseNameInfo(d []byte) (string, bool) {
	if len(d) < 4 {
		return "", false
	}
	n := binary.BigEndian.Uint32(d)
	if uint64(n)+6 > uint64(len(d)) {
		return "", false
	}
	k := binary.BigEndian.Uint16(d[4+n:])
	if 6+int(n)+2*int(k) != len(d) {
		return "", false
	}
	return string(d[4 : 4+n]), true
}

// Request is one transmission-phase request.
type Request struct {
	Flags  uint16
	Type   uint16
	Cookie uint64
	Offset uint64
	Length uint32
}

// ParseRequest decodes a 28-byte request header.
func ParseRequest(h []byte) (Request, error) {
	if len(h) < 28 {
		return Request{}, protoErr("short request")
	}
	be := binary.BigEndian
	if be.Uint32(h) != magicRequest {
		return Request{}, protoErr("bad request magic %#x", be.Uint32(h))
	}
	return Request{Flags: be.Uint16(h[4:]), Type: be.Uint16(h[6:]), Cookie: be.Uint64(h[8:]), Offset: be.Uint64(h[16:]), Length: be.Uint32(h[24:])}, nil
}

func (s *Server) transmit(rd *bufio.Reader, wr *bufio.Writer) error {
	be := binary.BigEndian
	var h [28]byte
	buf := make([]byte, 0, 1<<20)
	simple := func(cookie uint64, errno uint32, data []byte) error {
		var r [16]byte
		be.PutUint32(r[:], magicSimple)
		be.PutUint32(r[4:], errno)
		be.PutUint64(r[8:], cookie)
		wr.Write(r[:])
		if data != nil {
			wr.Write(data)
		}
		if rd.Buffered() == 0 { // nothing else queued: send now
			return wr.Flush()
		}
		return nil
	}
	for {
		if _, err := io.ReadFull(rd, h[:]); err != nil {
			wr.Flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		req, err := ParseRequest(h[:])
		if err != nil {
			return err
		}
		off, n := int64(req.Offset), int64(req.Length)
		inRange := req.Offset <= uint64(s.Size) && n <= s.Size-off
		switch req.Type {
		case cmdRead:
			if !inRange || n > MaxPayload {
				if err := simple(req.Cookie, errInval, nil); err != nil {
					return err
				}
				continue
			}
			buf = grow(buf, n)
			if _, err := s.Backend.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				if err := simple(req.Cookie, errIO, nil); err != nil {
					return err
				}
				continue
			}
			if s.Zero != nil {
				for _, z := range s.Zero(off, n) {
					lo, hi := max(z.Offset, off), min(z.Offset+z.Length, off+n)
					if lo < hi {
						clear(buf[lo-off : hi-off])
					}
				}
			}
			if err := simple(req.Cookie, 0, buf); err != nil {
				return err
			}
		case cmdWrite:
			if n > MaxPayload {
				return protoErr("write of %d bytes", n) // cannot skip the payload safely
			}
			buf = grow(buf, n)
			if _, err := io.ReadFull(rd, buf); err != nil {
				return err
			}
			var errno uint32
			switch {
			case s.ReadOnly:
				errno = errPerm
			case !inRange:
				errno = errNoSpc
			default:
				if _, err := s.Backend.WriteAt(buf, off); err != nil {
					errno = errIO
				} else if req.Flags&cmdFlagFUA != 0 && s.Backend.Sync() != nil {
					errno = errIO
				}
				if errno == 0 && s.OnWrite != nil {
					s.OnWrite(off, n)
				}
			}
			if err := simple(req.Cookie, errno, nil); err != nil {
				return err
			}
		case cmdFlush:
			var errno uint32
			if err := s.Backend.Sync(); err != nil {
				errno = errIO
			}
			if err := wr.Flush(); err != nil {
				return err
			}
			if err := simple(req.Cookie, errno, nil); err != nil {
				return err
			}
		case cmdDisc:
			return wr.Flush()
		default:
			if err := simple(req.Cookie, errInval, nil); err != nil {
				return err
			}
		}
	}
}

func grow(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}
