package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Live captures from a network interface with an AF_PACKET socket (for an
// OVS mirror port: the interface the mirror outputs to, or its veth peer).
type Live struct {
	mu                sync.Mutex // guards everything below; held by one poll at a time
	fd                int
	buf               []byte
	pfd               []unix.PollFd
	closed            bool
	received, dropped uint64
}

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("capture closed")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenLive opens a raw capture socket on ifname (all protocols, inbound and
// outbound frames). It needs CAP_NET_RAW.
func OpenLive(ifname string) (*Live, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("live capture: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("live capture on %s: %w", ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("live capture on %s: bind: %w", ifname, err)
	}
	// A deep queue absorbs bursts; FORCE passes rmem_max when we are root.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<20)
	}
	return &Live{fd: fd, buf: make([]byte, MaxPacket), pfd: []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}, nil
}

// Next waits for the next frame; it returns ErrClosed after Close.
func (l *Live) Next() (Packet, error) {
	for {
		p, ok, err := l.poll()
		if ok || err != nil {
			return p, err
		}
	}
}

// poll waits up to 100 ms for one frame.
func (l *Live) poll() (Packet, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Packet{}, false, ErrClosed
	}
	// Read first; only an empty queue costs a poll (one syscall per packet
	// under load instead of two).
	m, _, err := unix.Recvfrom(l.fd, l.buf, unix.MSG_DONTWAIT)
	if errors.Is(err, unix.EAGAIN) {
		if _, err := unix.Poll(l.pfd, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return Packet{}, false, fmt.Errorf("live capture: poll: %w", err)
		}
		return Packet{}, false, nil
	}
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return Packet{}, false, nil
		}
		return Packet{}, false, fmt.Errorf("live capture: %w", err)
	}
	return Packet{Time: time.Now().UnixNano(), Data: l.buf[:m], OrigLen: m, LinkType: LinkEthernet}, true, nil
}

// Stats returns the packets the kernel delivered and dropped so far
// (PACKET_STATISTICS, accumulated; still valid after Close).
func (l *Live) Stats() (received, dropped uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		err = l.readStats()
	}
	return l.received, l.dropped, err
}

func (l *Live) readStats() error {
	var st unix.TpacketStats
	size := uint32(unsafe.Sizeof(st))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(l.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		return fmt.Errorf("live capture: statistics: %w", e)
	}
	l.received += uint64(st.Packets) // the kernel resets them on every read
	l.dropped += uint64(st.Drops)
	return nil
}

// Close makes Next return ErrClosed (within 100 ms) and releases the
// socket. It is safe to call from any goroutine, more than once.
func (l *Live) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.readStats()
	return unix.Close(l.fd)
}
