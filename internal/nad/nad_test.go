package nad

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"secaas/internal/capture"
	"secaas/internal/detect"
	"secaas/internal/feature"
)

// frame builds an Ethernet/IPv4 frame with a TCP, UDP or ICMP header.
func frame(src, dst netip.Addr, proto uint8, sport, dport uint16, flags, ttl uint8, size int) []byte {
	size = max(size, 14+20+20)
	f := make([]byte, size)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8], ip[9] = ttl, proto
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	if proto == capture.ProtoTCP {
		l4[12], l4[13] = 5<<4, flags
	}
	return f
}

// mailServer writes a capture of a mail-server-like workload (SMTP, HTTP,
// POP3 from 30 clients with a slow daily-like load cycle) with a SYN flood
// from spoofed sources in windows [floodAt, floodAt+3).
func mailServer(t *testing.T, windows, floodAt int) []byte {
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.LinkEthernet)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 10))
	srv := netip.MustParseAddr("10.0.0.10")
	ports := []uint16{25, 80, 110}
	sec := int64(time.Second)
	base := int64(1_700_000_000) * sec
	for win := 0; win < windows; win++ {
		load := 40 + int(20*float64(win%60)/60) + r.IntN(10)
		for i := 0; i < load; i++ {
			ts := base + int64(win)*sec + int64(r.IntN(int(sec)))
			c := netip.AddrFrom4([4]byte{192, 168, 0, byte(1 + r.IntN(30))})
			port := ports[r.IntN(3)]
			cport := uint16(30000 + r.IntN(1000))
			ttl := uint8(64)
			if c.As4()[3]%3 == 0 {
				ttl = 52
			}
			flags := uint8(capture.TCPAck)
			if r.IntN(20) == 0 {
				flags = capture.TCPSyn
			}
			w.WritePacket(ts, frame(c, srv, capture.ProtoTCP, cport, port, flags, ttl, 60+r.IntN(2)*1400))
			w.WritePacket(ts+1000, frame(srv, c, capture.ProtoTCP, port, cport, capture.TCPAck, 64, 60+r.IntN(2)*1400))
		}
		if win >= floodAt && win < floodAt+3 {
			for i := 0; i < 600; i++ {
				ts := base + int64(win)*sec + int64(r.IntN(int(sec)))
				c := netip.AddrFrom4([4]byte{byte(1 + r.IntN(200)), byte(r.IntN(256)), byte(r.IntN(256)), 1})
				w.WritePacket(ts, frame(c, srv, capture.ProtoTCP, uint16(r.IntN(65535)), 80, capture.TCPSyn, uint8(30+r.IntN(200)), 60))
			}
		}
	}
	return buf.Bytes()
}

// TestPipelineDetectsFloodOnCapture runs the whole file pipeline: pcap
// bytes -> decode -> windows -> both detectors.
func TestPipelineDetectsFloodOnCapture(t *testing.T) {
	file := mailServer(t, 200, 170)
	r, err := capture.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var results []Result
	st, err := Run(r, Options{
		Servers:   []netip.Addr{netip.MustParseAddr("10.0.0.10")},
		Features:  feature.Config{Window: time.Second},
		Detectors: []string{"stability", "normalized"},
		Params:    detect.Params{History: 120},
	}, func(res Result) { results = append(results, res) })
	if err != nil || st.Malformed != 0 {
		t.Fatalf("run: %v %+v", err, st)
	}
	if len(results) != 199 { // the last window ends with the capture: partial, not judged
		t.Fatalf("%d windows", len(results))
	}
	for _, name := range []string{"stability", "normalized"} {
		fp, tp := 0, 0
		for i, res := range results {
			v := res.Verdicts[name]
			switch {
			case i >= 170 && i < 173 && v.Anomaly:
				tp++
			case (i < 170 || i >= 173) && v.Anomaly:
				fp++
			}
		}
		t.Logf("%s: %d/3 flood windows detected, %d false alarms in %d normal windows", name, tp, fp, 200-120-3)
		if tp != 3 || fp > 3 {
			t.Errorf("%s: detected %d/3, %d false alarms", name, tp, fp)
		}
	}
}
