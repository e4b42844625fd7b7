package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// Front-end requests.
const (
	reqGetFeatures         = 1
	reqSetFeatures         = 2
	reqSetOwner            = 3
	reqResetOwner          = 4
	reqSetMemTable         = 5
	reqSetVringNum         = 8
	reqSetVringAddr        = 9
	reqSetVringBase        = 10
	reqGetVringBase        = 11
	reqSetVringKick        = 12
	reqSetVringCall        = 13
	reqSetVringErr         = 14
	reqGetProtocolFeatures = 15
	reqSetProtocolFeatures = 16
	reqGetQueueNum         = 17
	reqSetVringEnable      = 18
	reqGetConfig           = 24
)

// Header flags.
const (
	flagVersion   = 0x1
	flagReply     = 1 << 2
	flagNeedReply = 1 << 3
)

// Feature bits.
const (
	featSegMax           = 2
	featFlush            = 9
	featProtocolFeatures = 30 // VHOST_USER_F_PROTOCOL_FEATURES
	featVersion1         = 32
	protoConfig          = 9 // VHOST_USER_PROTOCOL_F_CONFIG
)

const (
	hdrSize    = 12
	maxPayload = 4096 // the largest request (a memory table of 8 regions) is 264 bytes
	maxFDs     = 8
)

// message is one vhost-user message with the descriptors it carried.
type message struct {
	req, flags uint32
	payload    []byte
	fds        []int
}

// ProtocolError is a malformed message from the front-end.
type ProtocolError struct {
	Req uint32
	Msg string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("vhost-user: request %d: %s", e.Req, e.Msg)
}

// readMessage reads one message. The descriptors come with the header's
// bytes (QEMU sends a message with one sendmsg).
func readMessage(c *net.UnixConn, oob []byte) (message, error) {
	var m message
	var hdr [hdrSize]byte
	n, oobn, _, _, err := c.ReadMsgUnix(hdr[:], oob)
	if oobn > 0 {
		if cmsgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, cm := range cmsgs {
				if fds, ferr := unix.ParseUnixRights(&cm); ferr == nil {
					m.fds = append(m.fds, fds...)
				}
			}
		}
	}
	if err == nil && n == 0 {
		err = io.EOF
	}
	if err == nil && n < hdrSize {
		_, err = io.ReadFull(c, hdr[n:])
	}
	if err != nil {
		m.closeFDs()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return m, err
	}
	m.req = binary.LittleEndian.Uint32(hdr[0:])
	m.flags = binary.LittleEndian.Uint32(hdr[4:])
	size := binary.LittleEndian.Uint32(hdr[8:])
	if size > maxPayload {
		m.closeFDs()
		return m, &ProtocolError{m.req, fmt.Sprintf("payload of %d bytes (at most %d)", size, maxPayload)}
	}
	if len(m.fds) > maxFDs {
		m.closeFDs()
		return m, &ProtocolError{m.req, fmt.Sprintf("%d file descriptors", len(m.fds))}
	}
	m.payload = make([]byte, size)
	if _, err := io.ReadFull(c, m.payload); err != nil {
		m.closeFDs()
		return m, err
	}
	return m, nil
}

func (m *message) closeFDs() {
	for _, fd := range m.fds {
		unix.Close(fd)
	}
	m.fds = nil
}

// takeFD hands the message's only descriptor to the caller.
func (m *message) takeFD() (int, bool) {
	if len(m.fds) != 1 {
		return -1, false
	}
	fd := m.fds[0]
	m.fds = nil
	return fd, true
}

func (m *message) u64() (uint64, error) {
	if len(m.payload) < 8 {
		return 0, &ProtocolError{m.req, fmt.Sprintf("payload of %d bytes, want a u64", len(m.payload))}
	}
	return binary.LittleEndian.Uint64(m.payload), nil
}

// state is struct vhost_vring_state.
func (m *message) state() (index, num uint32, err error) {
	if len(m.payload) < 8 {
		return 0, 0, &ProtocolError{m.req, fmt.Sprintf("payload of %d bytes, want a vring state", len(m.payload))}
	}
	return binary.LittleEndian.Uint32(m.payload), binary.LittleEndian.Uint32(m.payload[4:]), nil
}

func writeReply(c *net.UnixConn, req uint32, payload []byte) error {
	b := make([]byte, hdrSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], req)
	binary.LittleEndian.PutUint32(b[4:], flagVersion|flagReply)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(payload)))
	copy(b[hdrSize:], payload)
	_, err := c.Write(b)
	return err
}

func u64Bytes(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
