package feature

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"secaas/internal/capture"
)

var (
	srv = netip.MustParseAddr("10.0.0.1")
	c1  = netip.MustParseAddr("10.0.0.2")
	c2  = netip.MustParseAddr("10.0.0.3")
	c3  = netip.MustParseAddr("10.0.0.4")
)

func pkt(src, dst netip.Addr, proto uint8, sport, dport uint16, flags, ttl uint8, n int) capture.Meta {
	return capture.Meta{Src: src, Dst: dst, Proto: proto, SrcPort: sport, DstPort: dport, TCPFlags: flags, TTL: ttl, Len: n}
}

// window1 is the hand-computed example of the package tests.
func window1() []capture.Meta {
	return []capture.Meta{
		pkt(c1, srv, capture.ProtoTCP, 40000, 80, capture.TCPSyn, 64, 60),
		pkt(c1, srv, capture.ProtoTCP, 40000, 80, capture.TCPAck, 64, 40),
		pkt(c2, srv, capture.ProtoTCP, 40001, 25, capture.TCPSyn, 128, 60),
		pkt(srv, c1, capture.ProtoTCP, 80, 40000, capture.TCPSyn|capture.TCPAck, 64, 60),
		pkt(c2, srv, capture.ProtoUDP, 5353, 53, 0, 128, 100),
		pkt(c3, srv, capture.ProtoICMP, 0, 0, 0, 64, 84),
		pkt(c1, c2, capture.ProtoTCP, 1, 2, capture.TCPSyn, 64, 60), // not the server's
	}
}

func run(cfg Config, windows ...[]capture.Meta) []Window {
	var out []Window
	e := NewExtractor(srv, cfg, func(w *Window) { out = append(out, *w) })
	sec := int64(time.Second)
	for i, ms := range windows {
		for k := range ms {
			e.Add(1000*sec+int64(i)*sec+int64(k), &ms[k])
		}
	}
	e.Flush()
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-4 }

func TestHandComputedWindow(t *testing.T) {
	w := run(Config{Window: time.Second}, window1())
	if len(w) != 1 || w[0].Packets != 6 || w[0].Bytes != 404 {
		t.Fatalf("windows %+v", w)
	}
	want := map[string]float64{"syn": 0.5, "ipentr": 1.45915, "ipcorr": 1, "ttl": 0.97095, "portsrv": 1.37095,
		"porto": 1.25163, "packet": 1.79248, "portacc": 1}
	for i, name := range StabilityNames {
		if !near(w[0].Stability[i], want[name]) {
			t.Errorf("%s = %.5f, want %.5f", name, w[0].Stability[i], want[name])
		}
	}
	wantL := map[string]float64{"access_port": 1, "ip_entro": 1.45915, "service_port_entro": 1.37095, "syn_rate": 0.5,
		"bps": 404, "pps": 6, "packet_per_ip": 2, "ip_count": 3, "syn_per_ip": 1, "bytes_per_ip": 404.0 / 3, "syn_count": 3}
	for i, name := range LSTMNames {
		if !near(w[0].LSTM[i], wantL[name]) {
			t.Errorf("%s = %.5f, want %.5f", name, w[0].LSTM[i], wantL[name])
		}
	}
	// Options.
	w = run(Config{Window: time.Second, SYNWithoutACK: true, AccessByPackets: true}, window1())
	if !near(w[0].Stability[0], 2.0/6) || !near(w[0].Stability[7], 0.97095) {
		t.Errorf("options: syn %.5f portacc %.5f", w[0].Stability[0], w[0].Stability[7])
	}
}

func TestIPCorrelationAndEmptyWindows(t *testing.T) {
	w2 := []capture.Meta{ // counts (c1, c2, c3) = (4, 2, 0): 2*(3,2,1)-2, correlation 1
		pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40), pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40),
		pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40), pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40),
		pkt(c2, srv, capture.ProtoTCP, 1, 80, 0, 64, 40), pkt(c2, srv, capture.ProtoTCP, 1, 80, 0, 64, 40),
	}
	w3 := []capture.Meta{ // (c1, c2) = (2, 2) after (4, 2): correlation over {c1, c2} = 0 variance -> cosine
		pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40), pkt(c1, srv, capture.ProtoTCP, 1, 80, 0, 64, 40),
		pkt(c2, srv, capture.ProtoTCP, 1, 80, 0, 64, 40), pkt(c2, srv, capture.ProtoTCP, 1, 80, 0, 64, 40),
	}
	ws := run(Config{Window: time.Second}, window1(), w2, w3, nil, w3)
	if len(ws) != 5 {
		t.Fatalf("%d windows, want 5 (one empty)", len(ws))
	}
	got := []float64{ws[0].Stability[2], ws[1].Stability[2], ws[2].Stability[2], ws[3].Stability[2], ws[4].Stability[2]}
	cos := (4*2 + 2*2) / math.Sqrt((16+4)*(4+4))
	want := []float64{1, 1, cos, 0, 0}
	for i := range want {
		if !near(got[i], want[i]) {
			t.Errorf("window %d ipcorr %.5f, want %.5f", i, got[i], want[i])
		}
	}
	if ws[3].Packets != 0 || ws[3].Stability != [NumStability]float64{} {
		t.Errorf("empty window %+v", ws[3])
	}
}

func TestAllocationFree(t *testing.T) {
	e := NewExtractor(srv, Config{Window: time.Second}, func(*Window) {})
	ms := window1()
	ts := int64(0)
	for i := 0; i < 2000; i++ { // warm up: maps reach their size
		ts += int64(time.Millisecond)
		e.Add(ts, &ms[i%len(ms)])
	}
	allocs := testing.AllocsPerRun(10000, func() {
		ts += int64(time.Millisecond)
		e.Add(ts, &ms[int(ts)%len(ms)])
	})
	if allocs != 0 {
		t.Fatalf("%.3f allocations per packet", allocs)
	}
}

func TestTickClosesQuietWindows(t *testing.T) {
	var got []Window
	e := NewExtractor(srv, Config{Window: time.Second}, func(w *Window) { got = append(got, *w) })
	sec := int64(time.Second)
	e.Tick(100 * sec) // starts the clock
	ms := window1()
	e.Add(100*sec+5, &ms[0])
	e.Tick(103*sec + 1) // closes 100, 101, 102
	if len(got) != 3 || got[0].Packets != 1 || got[1].Packets != 0 || got[2].Start != 102*sec {
		t.Fatalf("windows %+v", got)
	}
}
