package linuxkern

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Socket is one socket a process holds, as its struct sock describes it.
type Socket struct {
	PID        int32  `json:"pid"`
	Comm       string `json:"comm"`
	FD         int    `json:"fd"`
	Inode      uint64 `json:"inode"`
	Family     string `json:"family"` // inet, inet6, unix, netlink, packet, or af:N
	Type       string `json:"type"`   // stream, dgram, raw, seqpacket, ...
	Proto      string `json:"proto"`  // tcp, udp, udplite, raw, icmp, sctp, mptcp, unix, netlink, packet
	State      string `json:"state"`  // LISTEN, ESTABLISHED, ... (UNCONN: an unconnected datagram socket)
	LocalAddr  string `json:"local_addr,omitempty"`
	LocalPort  uint16 `json:"local_port"`
	RemoteAddr string `json:"remote_addr,omitempty"`
	RemotePort uint16 `json:"remote_port"`
	Path       string `json:"path,omitempty"` // a unix socket's name (@ for the abstract namespace)
	Sock       uint64 `json:"sock"`           // struct sock address
	// HiddenProcess: the holder is a process hidden from the task list
	// (set by the caller, which knows).
	HiddenProcess bool `json:"hidden_process,omitempty"`
}

// Address families and socket types (include/linux/socket.h, net.h).
const (
	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16
	afPacket  = 17
)

var sockTypes = map[uint16]string{1: "stream", 2: "dgram", 3: "raw", 4: "rdm", 5: "seqpacket", 6: "dccp", 10: "packet"}

// tcpStates are the kernel's TCP_* states, which every family's sk_state
// uses (index = value).
var tcpStates = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE"}

// socketOf decodes the socket behind a socket file: file->private_data is
// the struct socket, socket->sk the struct sock.
func (k *Kernel) socketOf(f uint64) (Socket, error) {
	h := k.Held
	sock, err := k.U64(f + uint64(h.FilePrivate))
	if err != nil {
		return Socket{}, fmt.Errorf("socket: %w", err)
	}
	sk, err := k.U64(sock + uint64(h.SocketSk))
	if err != nil {
		return Socket{}, fmt.Errorf("socket.sk: %w", err)
	}
	if sk == 0 { // released, or not yet attached
		return Socket{Family: "none", Proto: "none", State: "CLOSE"}, nil
	}
	return k.decodeSock(sk)
}

// decodeSock reads a struct sock: family, type, protocol, state, and the
// addresses and ports of inet sockets or the name of unix ones.
func (k *Kernel) decodeSock(sk uint64) (Socket, error) {
	h := k.Held
	s := Socket{Sock: sk}
	span := max(h.SkFamily+2, h.SkState+1, h.SkDaddr+4, h.SkRcvSaddr+4, h.SkDport+2, h.SkNum+2,
		h.SkType+2, h.SkProtocol+2, h.SkV6Daddr+16, h.SkV6RcvSaddr+16)
	b := make([]byte, span)
	if err := k.readSpan(b, sk); err != nil {
		return s, fmt.Errorf("sock %#x: %w", sk, err)
	}
	le := binary.LittleEndian
	family := le.Uint16(b[h.SkFamily:])
	typ := le.Uint16(b[h.SkType:])
	proto := le.Uint16(b[h.SkProtocol:])
	state := b[h.SkState]
	s.Type = sockTypes[typ]
	if s.Type == "" {
		s.Type = fmt.Sprintf("type:%d", typ)
	}
	if int(state) < len(tcpStates) && state != 0 {
		s.State = tcpStates[state]
	} else {
		s.State = fmt.Sprintf("state:%d", state)
	}
	switch family {
	case afInet, afInet6:
		s.Family, s.Proto = "inet", inetProto(typ, proto)
		s.LocalPort = le.Uint16(b[h.SkNum:])
		s.RemotePort = binary.BigEndian.Uint16(b[h.SkDport:])
		local := netip.AddrFrom4([4]byte(b[h.SkRcvSaddr : h.SkRcvSaddr+4]))
		remote := netip.AddrFrom4([4]byte(b[h.SkDaddr : h.SkDaddr+4]))
		if family == afInet6 {
			s.Family = "inet6"
			if h.SkV6Daddr == 0 {
				return s, fmt.Errorf("sock %#x: an IPv6 socket on a kernel without IPv6 fields", sk)
			}
			local = netip.AddrFrom16([16]byte(b[h.SkV6RcvSaddr : h.SkV6RcvSaddr+16]))
			remote = netip.AddrFrom16([16]byte(b[h.SkV6Daddr : h.SkV6Daddr+16]))
		}
		s.LocalAddr, s.RemoteAddr = local.String(), remote.String()
		if s.Proto != "tcp" && s.State == "CLOSE" {
			s.State = "UNCONN" // as ss says of an unconnected datagram socket
		}
	case afUnix:
		s.Family, s.Proto = "unix", "unix"
		if s.State == "CLOSE" {
			s.State = "UNCONN"
		}
		s.Path = k.unixName(sk)
	case afNetlink:
		s.Family, s.Proto, s.State = "netlink", "netlink", "UNCONN"
	case afPacket:
		s.Family, s.Proto = "packet", "packet"
	default:
		s.Family, s.Proto = fmt.Sprintf("af:%d", family), fmt.Sprintf("af:%d", family)
	}
	return s, nil
}

func inetProto(typ, proto uint16) string {
	switch {
	case proto == 1 || proto == 58:
		return "icmp" // ping sockets
	case proto == 132:
		return "sctp"
	case proto == 262:
		return "mptcp"
	case proto == 136:
		return "udplite"
	case typ == 1:
		return "tcp"
	case typ == 2:
		return "udp"
	case typ == 3:
		return "raw"
	}
	return fmt.Sprintf("ip:%d", proto)
}

// unixName is a unix socket's bound name: its unix_address (sun_path, or
// "@name" in the abstract namespace), "" when unbound or unreadable.
func (k *Kernel) unixName(sk uint64) string {
	h := k.Held
	addr, err := k.U64(sk + uint64(h.UnixAddr))
	if err != nil || addr == 0 {
		return ""
	}
	var lb [4]byte
	if k.readVA(lb[:], addr+uint64(h.UnixAddrLen)) != nil {
		return ""
	}
	// len counts sun_family (2 bytes) and the name; at most 110 bytes.
	n := int32(binary.LittleEndian.Uint32(lb[:]))
	if n <= 2 || n > 110 {
		return ""
	}
	name := make([]byte, n-2)
	if k.readSpan(name, addr+uint64(h.UnixAddrName)+2) != nil {
		return ""
	}
	if name[0] == 0 {
		return "@" + printable(name[1:])
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return printable(name)
}

// printable replaces bytes a terminal should not see.
func printable(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// readSpan reads bytes that may cross a page boundary, translating each
// page on its own (vmalloc and user memory are not contiguous).
func (k *Kernel) readSpan(b []byte, va uint64) error {
	for len(b) > 0 {
		n := min(uint64(len(b)), 4096-va&4095)
		if err := k.readVA(b[:n], va); err != nil {
			return err
		}
		b, va = b[n:], va+n
	}
	return nil
}
