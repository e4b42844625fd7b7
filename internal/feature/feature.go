package feature

import (
	"iter"
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"

	"secaas/internal/capture"
)

// StabilityNames are the 2018 features, in vector order.
var StabilityNames = [NumStability]string{"syn", "ipentr", "ipcorr", "ttl", "portsrv", "porto", "packet", "portacc"}

// StabilityResolution is, per 2018 feature, the smallest change that
// counts as one unit of deviation (the normalized detector's spread
// floor): 2 % of packets for syn, 0.05 of correlation, a tenth of a bit for
// the entropies.
var StabilityResolution = [NumStability]float64{0.02, 0.1, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1}

// LSTMNames are the 2020 features, in vector order (Table 1).
var LSTMNames = [NumLSTM]string{"access_port", "ip_entro", "service_port_entro", "syn_rate", "bps", "pps",
	"packet_per_ip", "ip_count", "syn_per_ip", "bytes_per_ip", "syn_count"}

// ExtraNames are features beyond the papers, for the attacks that move
// none of theirs much (slow scans, slow floods from spoofed sources,
// password guessing), in vector order:
//   - new_clients: clients of this window not seen in the MemoryWindows
//     windows before it;
//   - rst_out: packets from the server with RST, and ICMP from the server
//     (what probes of closed ports draw);
//   - max_syn_conn: the most connection requests (SYN without ACK) one
//     client sent to one service port.
var ExtraNames = [NumExtra]string{"new_clients", "rst_out", "max_syn_conn"}

// ExtraResolution: one count each.
var ExtraResolution = [NumExtra]float64{1, 1, 1}

// MemoryWindows is how many windows a client stays known for new_clients.
const MemoryWindows = 120

// maxKnown bounds the clients remembered for new_clients (a spoofed flood
// brings one per packet): beyond it, unknown clients count as new and are
// not remembered.
const maxKnown = 1 << 16

// Vector sizes.
const (
	NumStability = 8
	NumLSTM      = 11
	NumExtra     = 3
)

// Config shapes the extraction.
type Config struct {
	Window          time.Duration // default 60 s; down to 1 s (or less) for tests
	LengthBucket    int           // packet-length bucket width in bytes, default 1
	SYNWithoutACK   bool          // count only SYN without ACK
	AccessByPackets bool          // weight portacc by packets instead of clients
}

// Window is one closed window of one server.
type Window struct {
	Server    netip.Addr
	Start     int64 // ns since the epoch
	Duration  time.Duration
	Packets   int
	Bytes     int
	Stability [NumStability]float64
	LSTM      [NumLSTM]float64
	Extra     [NumExtra]float64
	// Partial marks the window Flush closed: the capture ended inside it,
	// so its features describe less than Duration of traffic.
	Partial bool
}

type clientPort struct {
	ip   netip.Addr
	port uint16
}

// Extractor accumulates one server's packets into windows.
type Extractor struct {
	cfg    Config
	server netip.Addr
	emit   func(*Window)

	start   int64 // start of the open window; 0 before the first packet
	started bool
	partial bool // the window being closed is cut short (Flush)
	first   bool // no window closed yet

	packets, bytes, syn int
	clients             map[netip.Addr]int // client -> packets
	prev                map[netip.Addr]int // the previous window's clients
	ttl                 [256]int
	ports               map[uint16]int
	proto               [4]int
	lengths             map[int]int
	access              map[clientPort]struct{}
	perClient           map[netip.Addr]int   // scratch: client -> distinct ports
	kdist               map[int]int          // scratch: k -> weight
	known               map[netip.Addr]int64 // client -> last window seen (new_clients)
	win                 int64                // windows closed
	rst                 int
	synConn             map[clientPort]int // inbound SYN without ACK per (client, service port)
	w                   Window             // reused for emit
}

// NewExtractor returns an extractor for server that calls emit for every
// closed window (the *Window is reused: copy what you keep).
func NewExtractor(server netip.Addr, cfg Config, emit func(*Window)) *Extractor {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.LengthBucket <= 0 {
		cfg.LengthBucket = 1
	}
	return &Extractor{cfg: cfg, server: server.Unmap(), emit: emit, first: true,
		clients: map[netip.Addr]int{}, prev: map[netip.Addr]int{}, ports: map[uint16]int{},
		lengths: map[int]int{}, access: map[clientPort]struct{}{}, perClient: map[netip.Addr]int{}, kdist: map[int]int{},
		known: map[netip.Addr]int64{}, synConn: map[clientPort]int{}}
}

// Add counts one decoded packet captured at ts (ns). Packets that do not
// involve the server are ignored.
func (e *Extractor) Add(ts int64, m *capture.Meta) {
	var client netip.Addr
	var svcPort uint16
	inbound := false
	switch {
	case m.Dst == e.server:
		client, svcPort, inbound = m.Src, m.DstPort, true
	case m.Src == e.server:
		client, svcPort = m.Dst, m.SrcPort
	default:
		return
	}
	w := int64(e.cfg.Window)
	if !e.started {
		e.start, e.started = ts-mod(ts, w), true
	}
	for ts >= e.start+w {
		e.close()
		e.start += w
	}
	e.packets++
	e.bytes += m.Len
	e.clients[client]++
	if m.Proto == capture.ProtoTCP && m.TCPFlags&capture.TCPSyn != 0 && (!e.cfg.SYNWithoutACK || m.TCPFlags&capture.TCPAck == 0) {
		e.syn++
	}
	if inbound {
		e.ttl[m.TTL]++
		if m.Proto == capture.ProtoTCP && m.TCPFlags&capture.TCPSyn != 0 && m.TCPFlags&capture.TCPAck == 0 {
			e.synConn[clientPort{client, svcPort}]++
		}
	} else if (m.Proto == capture.ProtoTCP && m.TCPFlags&capture.TCPRst != 0) || m.Proto == capture.ProtoICMP || m.Proto == capture.ProtoICMP6 {
		e.rst++
	}
	switch m.Proto {
	case capture.ProtoTCP:
		e.proto[0]++
	case capture.ProtoUDP:
		e.proto[1]++
	case capture.ProtoICMP, capture.ProtoICMP6:
		e.proto[2]++
	default:
		e.proto[3]++
	}
	if m.Proto == capture.ProtoTCP || m.Proto == capture.ProtoUDP {
		e.ports[svcPort]++
		if inbound {
			e.access[clientPort{client, svcPort}] = struct{}{}
		}
	}
	e.lengths[m.Len/e.cfg.LengthBucket]++
}

func mod(a, b int64) int64 {
	r := a % b
	if r < 0 {
		r += b
	}
	return r
}

// Tick closes every window that ended before ts, so that live monitoring
// reports quiet windows on time even when no packet arrives.
func (e *Extractor) Tick(ts int64) {
	w := int64(e.cfg.Window)
	if !e.started {
		e.start, e.started = ts-mod(ts, w), true
		return
	}
	for ts >= e.start+w {
		e.close()
		e.start += w
	}
}

// Flush closes the open window (at the end of a capture), marked Partial.
func (e *Extractor) Flush() {
	if e.started {
		e.partial = true
		e.close()
		e.partial = false
		e.start += int64(e.cfg.Window)
	}
}

func (e *Extractor) close() {
	w := &e.w
	*w = Window{Server: e.server, Start: e.start, Duration: e.cfg.Window, Packets: e.packets, Bytes: e.bytes, Partial: e.partial}
	n := float64(e.packets)
	secs := e.cfg.Window.Seconds()
	ipCount := float64(len(e.clients))

	syn := 0.0
	if n > 0 {
		syn = float64(e.syn) / n
	}
	ipentr := entropy(maps.Values(e.clients), e.packets)
	ipcorr := 1.0
	if !e.first {
		ipcorr = correlation(e.clients, e.prev)
	}
	inbound := 0
	for _, c := range e.ttl {
		inbound += c
	}
	ttl := entropy(slices.Values(e.ttl[:]), inbound)
	l4 := 0
	for _, c := range e.ports {
		l4 += c
	}
	portsrv := entropy(maps.Values(e.ports), l4)
	porto := entropy(slices.Values(e.proto[:]), e.packets)
	packet := entropy(maps.Values(e.lengths), e.packets)
	portacc := e.accessIndex()

	w.Stability = [NumStability]float64{syn, ipentr, ipcorr, ttl, portsrv, porto, packet, portacc}
	var ppi, spi, bpi float64
	if ipCount > 0 {
		ppi, spi, bpi = n/ipCount, float64(e.syn)/ipCount, float64(e.bytes)/ipCount
	}
	w.LSTM = [NumLSTM]float64{portacc, ipentr, portsrv, syn, float64(e.bytes) / secs, n / secs, ppi, ipCount, spi, bpi, float64(e.syn)}
	newClients, maxSyn := 0, 0
	for c := range e.clients {
		last, ok := e.known[c]
		if !ok || e.win-last > MemoryWindows {
			newClients++
		}
		if ok || len(e.known) < maxKnown {
			e.known[c] = e.win
		}
	}
	for _, k := range e.synConn {
		maxSyn = max(maxSyn, k)
	}
	w.Extra = [NumExtra]float64{float64(newClients), float64(e.rst), float64(maxSyn)}
	if e.emit != nil {
		e.emit(w)
	}
	// Reset, keeping the maps' storage; this window's clients become prev.
	e.prev, e.clients = e.clients, e.prev
	clear(e.clients)
	e.first = false
	e.packets, e.bytes, e.syn, e.rst = 0, 0, 0, 0
	clear(e.synConn)
	e.win++
	if e.win%MemoryWindows == 0 { // forget the clients not seen for MemoryWindows
		for c, last := range e.known {
			if e.win-last > MemoryWindows {
				delete(e.known, c)
			}
		}
	}
	e.ttl = [256]int{}
	e.proto = [4]int{}
	clear(e.ports)
	clear(e.lengths)
	clear(e.access)
}

func (e *Extractor) accessIndex() float64 {
	clear(e.perClient)
	clear(e.kdist)
	for cp := range e.access {
		e.perClient[cp.ip]++
	}
	total := 0
	for ip, k := range e.perClient {
		wt := 1
		if e.cfg.AccessByPackets {
			wt = e.clients[ip]
		}
		e.kdist[k] += wt
		total += wt
	}
	return entropy(maps.Values(e.kdist), total)
}

// entropy is the Shannon entropy in bits of counts summing to total.
func entropy(counts iter.Seq[int], total int) float64 {
	if total <= 0 {
		return 0
	}
	h := 0.0
	t := float64(total)
	for c := range counts {
		if c > 0 {
			p := float64(c) / t
			h -= p * math.Log2(p)
		}
	}
	return h
}

// correlation is the Pearson correlation of two sparse count vectors over
// the union of their keys, or their cosine similarity when one has zero
// variance; 0 when either is empty.
func correlation(a, b map[netip.Addr]int) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	var n, sa, sb float64
	for k, x := range a {
		n++
		sa += float64(x)
		sb += float64(b[k])
	}
	for k, y := range b {
		if _, ok := a[k]; !ok {
			n++
			sb += float64(y)
		}
	}
	ma, mb := sa/n, sb/n
	var cov, va, vb, dot, na, nb float64
	add := func(x, y float64) {
		cov += (x - ma) * (y - mb)
		va += (x - ma) * (x - ma)
		vb += (y - mb) * (y - mb)
		dot += x * y
		na += x * x
		nb += y * y
	}
	for k, x := range a {
		add(float64(x), float64(b[k]))
	}
	for k, y := range b {
		if _, ok := a[k]; !ok {
			add(0, float64(y))
		}
	}
	if va > 1e-12 && vb > 1e-12 {
		return cov / math.Sqrt(va*vb)
	}
	return dot / math.Sqrt(na*nb)
}
