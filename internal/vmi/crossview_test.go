package vmi

import (
	"net/netip"
	"testing"
	"time"

	"secaas/internal/capture"
	"secaas/internal/linuxkern"
)

// TestCrossView: ports the VM answers on across a listing's moment are
// matched with its sockets; one answered with no socket to own it is
// reported, one answered only before the listing or never asked is not.
func TestCrossView(t *testing.T) {
	vm := netip.MustParseAddr("10.0.0.5")
	peer := netip.MustParseAddr("10.0.0.9")
	r := NewResponses(vm)
	at := time.Unix(1000, 0)
	pkt := func(dt time.Duration, proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) {
		r.Observe(at.Add(dt).UnixNano(), &capture.Meta{Src: src, Dst: dst, Proto: proto, SrcPort: sport, DstPort: dport, TCPFlags: flags})
	}
	for _, dt := range []time.Duration{-2 * time.Second, 2 * time.Second} {
		pkt(dt, capture.ProtoTCP, vm, 8080, peer, 40000, 0x12)  // SYN-ACK: a listener (owned)
		pkt(dt, capture.ProtoTCP, vm, 31337, peer, 40001, 0x12) // SYN-ACK: nobody listens
		pkt(dt, capture.ProtoTCP, vm, 45000, peer, 22, 0x02)    // the VM connecting out: not an answer
		pkt(dt, capture.ProtoUDP, peer, 5000, vm, 53, 0)        // a request ...
		pkt(dt, capture.ProtoUDP, vm, 53, peer, 5000, 0)        // ... answered by a bound socket
		pkt(dt, capture.ProtoUDP, peer, 5001, vm, 9999, 0)
		pkt(dt, capture.ProtoUDP, vm, 9999, peer, 5001, 0) // answered, no socket
		pkt(dt, capture.ProtoUDP, vm, 7777, peer, 5002, 0) // sent, never asked
	}
	pkt(-time.Second, capture.ProtoTCP, vm, 2222, peer, 40002, 0x12) // answered only before
	socks := []linuxkern.Socket{
		{Proto: "tcp", State: "LISTEN", LocalAddr: "0.0.0.0", LocalPort: 8080},
		{Proto: "tcp", State: "ESTABLISHED", LocalAddr: "10.0.0.5", LocalPort: 31337}, // not a listener
		{Proto: "udp", State: "UNCONN", LocalAddr: "::", LocalPort: 53},
		{Proto: "udp", State: "UNCONN", LocalAddr: "127.0.0.1", LocalPort: 9999}, // another address
	}
	ans := r.Answering(at, 5*time.Second)
	if len(ans) != 4 {
		t.Fatalf("answering %+v, want tcp 8080, 31337 and udp 53, 9999", ans)
	}
	got := CrossView(socks, ans, at)
	if len(got) != 2 || got[0].Proto != "tcp" || got[0].Port != 31337 || got[1].Proto != "udp" || got[1].Port != 9999 || got[0].Addr != vm {
		t.Fatalf("unowned %+v", got)
	}
	if ans := r.Answering(at.Add(time.Minute), 5*time.Second); len(ans) != 0 {
		t.Fatalf("a minute later: %+v", ans)
	}
}

// TestResponsesFlood: a flood of UDP requests from ever new ports fills
// the request table to its bound and no further, and stays cheap.
func TestResponsesFlood(t *testing.T) {
	vm := netip.MustParseAddr("10.0.0.5")
	r := NewResponses(vm)
	t0 := time.Now()
	for i := 0; i < 4*maxAsked; i++ {
		src := netip.AddrFrom4([4]byte{10, 1, byte(i >> 16), byte(i >> 8)})
		r.Observe(int64(i), &capture.Meta{Src: src, Dst: vm, Proto: capture.ProtoUDP, SrcPort: uint16(i), DstPort: 53})
	}
	if len(r.asked) > maxAsked {
		t.Fatalf("%d requests remembered, bound %d", len(r.asked), maxAsked)
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Fatalf("%d packets took %s", 4*maxAsked, el)
	}
}
