package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"text/tabwriter"
	"time"

	"secaas/internal/capture"
	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/lab"
	"secaas/internal/nad"
)

// NADResult is what secaas bench nad measured.
type NADResult struct {
	Packets        int
	DecodeMpps     float64 // read + decode only
	PipelineMpps   float64 // read + decode + both feature sets
	AllocsPerPkt   float64
	BytesPerServer int64 // heap held by one monitored server's extractor
	Clients        int
	// Many monitored servers in one process: each with its extractor and
	// both detectors, histories full.
	Many            int   // servers
	ManyClients     int   // clients per server
	ManyWindows     int   // windows per server
	ManyPackets     int   // packets in that capture
	ManyBytesPerSrv int64 // heap per server
	ManyMpps        float64
	ManyWindowsPerS float64 // windows judged (features + both detectors) per second
}

// tcpFrame fills f (74 bytes, Ethernet/IPv4/TCP) with one packet between
// server srv and client c, inbound or outbound, with random ports of mail
// and web services and an occasional SYN.
func tcpFrame(f []byte, r *rand.Rand, srv, c [4]byte, inbound bool, ttl uint8) {
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 60)
	ip[8], ip[9] = ttl, capture.ProtoTCP
	sport, dport := uint16(30000+r.IntN(1000)), []uint16{25, 80, 110}[r.IntN(3)]
	if inbound {
		copy(ip[12:], c[:])
		copy(ip[16:], srv[:])
	} else {
		copy(ip[12:], srv[:])
		copy(ip[16:], c[:])
		sport, dport = dport, sport
	}
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	ip[33] = capture.TCPAck
	if r.IntN(50) == 0 {
		ip[33] = capture.TCPSyn
	}
}

// synthetic builds an in-memory pcap of n packets to/from one server from
// `clients` clients over several one-second windows.
func synthetic(n, clients int) []byte {
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.LinkEthernet)
	r := rand.New(rand.NewPCG(1, 1))
	f := make([]byte, 74)
	ts := int64(1_700_000_000) * 1e9
	for i := 0; i < n; i++ {
		c := [4]byte{192, 168, byte(r.IntN(clients) >> 8), byte(r.IntN(clients))}
		tcpFrame(f, r, [4]byte{10, 0, 0, 10}, c, i%2 == 0, 64)
		ts += 2000 // 500 kpps of capture time: windows of 1 s close regularly
		w.WritePacket(ts, f)
	}
	return buf.Bytes()
}

// syntheticMany builds an in-memory pcap of `windows` one-second windows in
// which each of `servers` servers (10.1.x.y) exchanges perWindow packets
// with its own `clients` clients.
func syntheticMany(servers, clients, windows, perWindow int) []byte {
	var buf bytes.Buffer
	w, _ := capture.NewWriter(&buf, capture.LinkEthernet)
	r := rand.New(rand.NewPCG(2, 2))
	f := make([]byte, 74)
	ts := int64(1_700_000_000) * 1e9
	step := int64(time.Second) / int64(servers*perWindow)
	for win := 0; win < windows; win++ {
		for k := 0; k < servers*perWindow; k++ {
			si := r.IntN(servers)
			c := [4]byte{192, byte(si >> 8), byte(si), byte(r.IntN(clients))}
			tcpFrame(f, r, [4]byte{10, 1, byte(si >> 8), byte(si)}, c, k%2 == 0, uint8(40+r.IntN(30)))
			ts += step
			w.WritePacket(ts, f)
		}
	}
	return buf.Bytes()
}

// manyServers runs the file pipeline (features and both detectors) for
// res.Many servers and measures the heap it holds per server.
func manyServers(res *NADResult) error {
	file := syntheticMany(res.Many, res.ManyClients, res.ManyWindows, 40)
	var servers []netip.Addr
	for si := 0; si < res.Many; si++ {
		servers = append(servers, netip.AddrFrom4([4]byte{10, 1, byte(si >> 8), byte(si)}))
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	// Every server's last window ends with the capture and is not judged:
	// the heap is measured at the last judged window, while the pipeline
	// still holds every server's state.
	windows, ready, last := 0, 0, res.Many*(res.ManyWindows-1)
	o := nad.Options{Servers: servers, Features: feature.Config{Window: time.Second}, Detectors: []string{"stability", "normalized"}, Params: detect.Params{History: 120}}
	r, err := capture.NewReader(bytes.NewReader(file))
	if err != nil {
		return err
	}
	t0 := time.Now()
	st, err := nad.Run(r, o, func(v nad.Result) {
		windows++
		if v.Verdicts["normalized"].Ready {
			ready++
		}
		if windows == last {
			runtime.GC()
			runtime.ReadMemStats(&m1)
		}
	})
	if err != nil {
		return err
	}
	el := time.Since(t0).Seconds()
	res.ManyMpps = float64(st.Decoded) / el / 1e6
	res.ManyWindowsPerS = float64(windows) / el
	res.ManyPackets = st.Decoded
	if windows < last || ready == 0 {
		return fmt.Errorf("many servers: %d windows judged (%d ready), want %d", windows, ready, last)
	}
	res.ManyBytesPerSrv = (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / int64(res.Many)
	runtime.KeepAlive(file)
	return nil
}

// RunNAD measures the packet path of anomaly detection.
func RunNAD(packets int, progress io.Writer) (*NADResult, error) {
	if packets <= 0 {
		packets = 5_000_000
	}
	res := &NADResult{Packets: packets, Clients: 1000}
	fmt.Fprintf(progress, "building a %d-packet capture in memory\n", packets)
	file := synthetic(packets, res.Clients)
	srv := netip.MustParseAddr("10.0.0.10")

	// Decode only.
	r, err := capture.NewReader(bytes.NewReader(file))
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	st, err := nad.Each(r, func(int64, *capture.Meta) {})
	if err != nil {
		return nil, err
	}
	res.DecodeMpps = float64(st.Decoded) / time.Since(t0).Seconds() / 1e6

	// Decode + both feature sets (one extractor computes both), one core.
	windows := 0
	ext := feature.NewExtractor(srv, feature.Config{Window: time.Second}, func(*feature.Window) { windows++ })
	r, _ = capture.NewReader(bytes.NewReader(file))
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	t0 = time.Now()
	st, err = nad.Each(r, func(ts int64, m *capture.Meta) { ext.Add(ts, m) })
	if err != nil {
		return nil, err
	}
	ext.Flush()
	el := time.Since(t0)
	runtime.ReadMemStats(&m1)
	res.PipelineMpps = float64(st.Decoded) / el.Seconds() / 1e6
	res.AllocsPerPkt = float64(m1.Mallocs-m0.Mallocs) / float64(st.Decoded)

	// Memory of one monitored server with 1000 clients per window.
	runtime.GC()
	runtime.ReadMemStats(&m0)
	keep := feature.NewExtractor(srv, feature.Config{Window: time.Second}, nil)
	r, _ = capture.NewReader(bytes.NewReader(file[:min(len(file), 24+90*200000)]))
	nad.Each(r, func(ts int64, m *capture.Meta) { keep.Add(ts, m) })
	runtime.GC()
	runtime.ReadMemStats(&m1)
	res.BytesPerServer = int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(file)

	// Many monitored servers: extractor and both detectors each.
	res.Many, res.ManyClients, res.ManyWindows = 200, 100, 130
	fmt.Fprintf(progress, "%d monitored servers, %d clients each, %d windows\n", res.Many, res.ManyClients, res.ManyWindows)
	if err := manyServers(res); err != nil {
		return nil, err
	}
	return res, nil
}

// WriteNAD prints the result as Markdown.
func WriteNAD(w io.Writer, r *NADResult) {
	fmt.Fprintf(w, "### Anomaly detection packet path (secaas bench nad)\n\nOne core, %d synthetic packets (Ethernet/IPv4/TCP, %d clients, 1 s windows), read from an in-memory pcap.\n\n", r.Packets, r.Clients)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| measurement\t ours\t goal / reference\t")
	fmt.Fprintln(tw, "|---\t---\t---\t")
	fmt.Fprintf(tw, "| read + decode\t %.1f Mpps\t ~14 Mpps measured for plain decoding\t\n", r.DecodeMpps)
	fmt.Fprintf(tw, "| read + decode + 8, 11 and 3 extra features\t %.1f Mpps\t >= 5 Mpps per core\t\n", r.PipelineMpps)
	fmt.Fprintf(tw, "| allocations per packet\t %.4f\t 0\t\n", r.AllocsPerPkt)
	fmt.Fprintf(tw, "| memory per monitored server (%d clients per window; feature extractor)\t %d KiB\t -\t\n", r.Clients, r.BytesPerServer/1024)
	fmt.Fprintf(tw, "| %d servers at once (%d clients each): memory per server (extractor + both detectors, N = 120 history)\t %d KiB\t -\t\n", r.Many, r.ManyClients, r.ManyBytesPerSrv/1024)
	fmt.Fprintf(tw, "| %d servers at once: windows judged per second (decode, features, both detectors; %d packets, %.2f Mpps)\t %.0f\t -\t\n", r.Many, r.ManyPackets, r.ManyMpps, r.ManyWindowsPerS)
	tw.Flush()
}

// LiveResult is the live-capture part of bench nad.
type LiveResult struct {
	Sent, Received, Dropped uint64
	Seconds                 float64
	SenderPPS, CapturePPS   float64
	Windows                 int
}

// RunLive blasts a synthetic capture with tcpreplay --topspeed from a
// namespace over a veth and captures it on the host side with AF_PACKET,
// decoding and computing features as the monitor does; it reports what the
// kernel delivered and dropped.
func RunLive(ctx context.Context, packets int, progress io.Writer) (*LiveResult, error) {
	if _, err := exec.LookPath("tcpreplay"); err != nil {
		return nil, fmt.Errorf("tcpreplay is not installed (make deps)")
	}
	if err := lab.Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "secaas-bench-live")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "blast.pcap")
	if err := os.WriteFile(file, synthetic(packets, 1000), 0o644); err != nil {
		return nil, err
	}
	const ns, host = "sbl-src", "sblv"
	cleanup := func() {
		exec.Command("ip", "link", "del", host).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	}
	cleanup()
	defer cleanup()
	for _, c := range [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", host, "up"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%v: %v: %s", c, err, out)
		}
	}
	live, err := capture.OpenLive(host)
	if err != nil {
		return nil, err
	}
	res := &LiveResult{Sent: uint64(packets)}
	ext := feature.NewExtractor(netip.MustParseAddr("10.0.0.10"), feature.Config{Window: time.Second}, func(*feature.Window) { res.Windows++ })
	got := make(chan uint64, 1)
	go func() {
		var n uint64
		var m capture.Meta
		for {
			p, err := live.Next()
			if err != nil {
				got <- n
				return
			}
			if capture.Decode(p.LinkType, p.Data, &m) == nil {
				ext.Add(p.Time, &m)
				n++
			}
		}
	}()
	fmt.Fprintf(progress, "live capture: tcpreplay --topspeed of %d packets over a veth\n", packets)
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpreplay", "--topspeed", "-i", "eth0", file).CombinedOutput()
	res.Seconds = time.Since(t0).Seconds()
	time.Sleep(300 * time.Millisecond)
	live.Close()
	n := <-got
	if err != nil {
		return nil, fmt.Errorf("tcpreplay: %v: %s", err, out)
	}
	_, res.Dropped, _ = live.Stats()
	res.Received = n
	if m := regexp.MustCompile(`Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps`).FindSubmatch(out); m != nil {
		res.SenderPPS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	res.CapturePPS = float64(n) / res.Seconds
	return res, nil
}

// WriteLive prints the live part.
func WriteLive(w io.Writer, r *LiveResult) {
	fmt.Fprintf(w, "\nLive capture (AF_PACKET on a veth, decode + features in the capturing goroutine; sender: tcpreplay --topspeed in a namespace):\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| sent\t sender rate\t captured\t kernel drops\t goal\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t")
	fmt.Fprintf(tw, "| %d\t %.0f pps\t %d (%.1f %%)\t %d\t no drops at the highest rate the lab can generate\t\n",
		r.Sent, r.SenderPPS, r.Received, 100*float64(r.Received)/float64(r.Sent), r.Dropped)
	tw.Flush()
}
