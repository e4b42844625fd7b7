package lab

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"secaas/internal/capture"
	"secaas/internal/tenant"
)

// RewriteStats counts what a rewrite kept.
type RewriteStats struct {
	Victim        netip.Addr // the capture's most frequent destination
	Kept, Skipped int
	DurationNanos int64
}

// RewriteToServer turns a real attack capture into frames for the lab: the
// packets sent to the capture's victim (its most frequent IPv4
// destination) are readdressed to server, framed as Ethernet from srcMAC to
// serverMAC, with IP and TCP/UDP checksums recomputed. Everything else
// (the victim's own replies, IPv6) is left out: the lab's real server
// answers for itself.
func RewriteToServer(in, out string, server netip.Addr, serverMAC, srcMAC tenant.MAC) (RewriteStats, error) {
	var st RewriteStats
	victim, err := topIPv4Destination(in)
	if err != nil {
		return st, err
	}
	st.Victim = victim
	f, err := os.Open(in)
	if err != nil {
		return st, err
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		return st, err
	}
	o, err := os.Create(out)
	if err != nil {
		return st, err
	}
	defer o.Close()
	bw := bufio.NewWriter(o)
	w, err := capture.NewWriter(bw, capture.LinkEthernet)
	if err != nil {
		return st, err
	}
	frame := make([]byte, 0, 2048)
	var first, last int64
	dst := server.As4()
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("rewrite %s: %w", in, err)
		}
		et, ip, err := capture.IPPayload(p.LinkType, p.Data)
		if err != nil || et != 0x0800 || len(ip) < 20 || netip.AddrFrom4([4]byte(ip[16:20])) != victim {
			st.Skipped++
			continue
		}
		frame = frame[:0]
		frame = append(frame, serverMAC[:]...)
		frame = append(frame, srcMAC[:]...)
		frame = append(frame, 0x08, 0x00)
		frame = append(frame, ip...)
		pkt := frame[14:]
		copy(pkt[16:20], dst[:])
		fixChecksums(pkt)
		if first == 0 {
			first = p.Time
		}
		last = p.Time
		if err := w.WritePacket(p.Time, frame); err != nil {
			return st, err
		}
		st.Kept++
	}
	st.DurationNanos = last - first
	if st.Kept == 0 {
		return st, fmt.Errorf("rewrite %s: no IPv4 packet to %s", in, victim)
	}
	return st, bw.Flush()
}

func topIPv4Destination(path string) (netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	r, err := capture.NewReader(f)
	if err != nil {
		return netip.Addr{}, err
	}
	count := map[netip.Addr]int{}
	var m capture.Meta
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return netip.Addr{}, err
		}
		if capture.Decode(p.LinkType, p.Data, &m) == nil && m.Dst.Is4() {
			count[m.Dst]++
		}
	}
	var best netip.Addr
	for a, c := range count {
		if !best.IsValid() || c > count[best] || c == count[best] && a.Less(best) {
			best = a
		}
	}
	if !best.IsValid() {
		return best, fmt.Errorf("%s holds no IPv4 packet", path)
	}
	return best, nil
}

// fixChecksums recomputes the IPv4 header checksum and, for a complete
// first fragment, the TCP or UDP checksum.
func fixChecksums(ip []byte) {
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || len(ip) < ihl {
		return
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip[:ihl], 0)))
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total > len(ip) || total < ihl || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 {
		return // truncated capture or fragment: leave the transport alone
	}
	l4 := ip[ihl:total]
	var off int
	switch ip[9] {
	case capture.ProtoTCP:
		off = 16
	case capture.ProtoUDP:
		off = 6
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	l4[off], l4[off+1] = 0, 0
	pseudo := sum(ip[12:20], 0) + uint32(ip[9]) + uint32(len(l4))
	c := ^fold(sum(l4, pseudo))
	if c == 0 && ip[9] == capture.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

func sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
