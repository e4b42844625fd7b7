package capture

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// IP protocol numbers.
const (
	ProtoICMP  = 1
	ProtoTCP   = 6
	ProtoUDP   = 17
	ProtoICMP6 = 58
)

// Meta is what the feature extractor needs of one packet.
type Meta struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	TCPFlags         uint8
	TTL              uint8 // hop limit for IPv6
	Len              int   // IP datagram length (header + payload) as on the wire
}

// ErrNotIP is returned for frames that carry no IPv4/IPv6 (ARP, LLDP...);
// callers skip them. Other decode errors mean a malformed packet.
var ErrNotIP = errors.New("not an IP packet")

var (
	errShort   = errors.New("packet too short")
	errBadIP   = errors.New("bad IP header")
	errBadLink = errors.New("unsupported link type")
)

// Decode parses frame (of the given link type) into m without allocating.
// Transport fields stay zero when the transport header is missing (a
// fragment, or a truncated capture).
func Decode(linkType int, frame []byte, m *Meta) error {
	*m = Meta{}
	et, b, err := IPPayload(linkType, frame)
	if err != nil {
		return err
	}
	if et == 0x0800 {
		return decodeIPv4(b, m)
	}
	return decodeIPv6(b, m)
}

// IPPayload strips the link layer: it returns the EtherType (0x0800 or
// 0x86dd) and the IP packet, or ErrNotIP.
func IPPayload(linkType int, frame []byte) (uint16, []byte, error) {
	var et uint16
	b := frame
	switch linkType {
	case LinkEthernet:
		if len(b) < 14 {
			return 0, nil, errShort
		}
		et, b = binary.BigEndian.Uint16(b[12:14]), b[14:]
		for i := 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++ { // 802.1Q / QinQ
			if len(b) < 4 {
				return 0, nil, errShort
			}
			et, b = binary.BigEndian.Uint16(b[2:4]), b[4:]
		}
	case LinkRaw, linkRawAlt, LinkIPv4, LinkIPv6:
		if len(b) < 1 {
			return 0, nil, errShort
		}
		switch b[0] >> 4 {
		case 4:
			et = 0x0800
		case 6:
			et = 0x86dd
		default:
			return 0, nil, errBadIP
		}
	case LinkLinuxSLL:
		if len(b) < 16 {
			return 0, nil, errShort
		}
		et, b = binary.BigEndian.Uint16(b[14:16]), b[16:]
	case LinkLinuxSL2:
		if len(b) < 20 {
			return 0, nil, errShort
		}
		et, b = binary.BigEndian.Uint16(b[0:2]), b[20:]
	case LinkNull:
		if len(b) < 4 {
			return 0, nil, errShort
		}
		fam := binary.LittleEndian.Uint32(b[0:4])
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b[0:4])
		}
		b = b[4:]
		switch fam {
		case 2:
			et = 0x0800
		case 24, 28, 30:
			et = 0x86dd
		default:
			return 0, nil, ErrNotIP
		}
	default:
		return 0, nil, errBadLink
	}
	if et != 0x0800 && et != 0x86dd {
		return 0, nil, ErrNotIP
	}
	return et, b, nil
}

func decodeIPv4(b []byte, m *Meta) error {
	if len(b) < 20 || b[0]>>4 != 4 {
		return errBadIP
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || len(b) < ihl {
		return errBadIP
	}
	m.Src = netip.AddrFrom4([4]byte(b[12:16]))
	m.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	m.TTL = b[8]
	m.Proto = b[9]
	m.Len = total
	if total < ihl {
		m.Len = len(b) // TSO or a broken length: trust the capture
	}
	if frag := binary.BigEndian.Uint16(b[6:8]) & 0x1fff; frag != 0 {
		return nil // not the first fragment: no transport header
	}
	transport(b[ihl:], m)
	return nil
}

func decodeIPv6(b []byte, m *Meta) error {
	if len(b) < 40 || b[0]>>4 != 6 {
		return errBadIP
	}
	m.Src = netip.AddrFrom16([16]byte(b[8:24]))
	m.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	m.TTL = b[7]
	m.Len = 40 + int(binary.BigEndian.Uint16(b[4:6]))
	next, b := b[6], b[40:]
	// Walk a bounded number of extension headers.
	for i := 0; i < 8; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < 8 {
				m.Proto = next
				return nil
			}
			l := (int(b[1]) + 1) * 8
			if len(b) < l {
				m.Proto = next
				return nil
			}
			next, b = b[0], b[l:]
		case 44: // fragment
			if len(b) < 8 {
				m.Proto = next
				return nil
			}
			off := binary.BigEndian.Uint16(b[2:4]) >> 3
			next, b = b[0], b[8:]
			if off != 0 {
				m.Proto = next
				return nil
			}
		default:
			m.Proto = next
			transport(b, m)
			return nil
		}
	}
	m.Proto = next
	return nil
}

func transport(b []byte, m *Meta) {
	switch m.Proto {
	case ProtoTCP:
		if len(b) >= 14 {
			m.SrcPort = binary.BigEndian.Uint16(b[0:2])
			m.DstPort = binary.BigEndian.Uint16(b[2:4])
			m.TCPFlags = b[13]
		}
	case ProtoUDP:
		if len(b) >= 4 {
			m.SrcPort = binary.BigEndian.Uint16(b[0:2])
			m.DstPort = binary.BigEndian.Uint16(b[2:4])
		}
	}
}
