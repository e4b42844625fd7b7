package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"secaas/internal/capture"
	"secaas/internal/nad"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// TrafficConfig configures a traffic lab run.
type TrafficConfig struct {
	Seed     uint64
	Duration time.Duration // whole run
	Period   time.Duration // the compressed "day" of the benign load (default 20 min)
	Rate     float64       // mean benign sessions per second (default 25)
	Clients  int           // benign client IPs (default 300 varied, 32 paper)
	Benign   string        // BenignVaried (default) or BenignPaper
	Span     time.Duration // how long one attack lasts (default 2 s)
	Attacks  []nad.Attack  // when and what (see nad.PlanAttacks)
	Out      string        // directory for capture.pcap and labels.json
	Prefix   string        // prefix of every name the lab creates (default "sl")
	Progress io.Writer
}

// ServerIP is the traffic lab's monitored server.
var ServerIP = netip.MustParseAddr("10.50.0.10")

// TrafficResult is what a run produced.
type TrafficResult struct {
	Capture, LabelsFile string
	Labels              nad.Labels
	Packets, Dropped    uint64
	Sessions, Failed    int
}

type trafficLab struct {
	cfg     TrafficConfig
	br      *ovs.Bridge
	server  *Host
	clients []*Host
	ips     []netip.Addr // benign client addresses
	owner   []*Host      // namespace of each address
	attack  *Host
	mirror  string // host-side interface the mirror copies to
}

func (c *TrafficConfig) defaults() {
	if c.Period <= 0 {
		// The paper profiles 2 h of 60 s windows against a 24 h cycle; with
		// 1 s windows and N = 120 the same ratio gives a 24 min "day".
		c.Period = 20 * time.Minute
	}
	if c.Rate <= 0 {
		c.Rate = 25
	}
	if c.Benign == "" {
		c.Benign = BenignVaried
	}
	if c.Clients <= 0 {
		c.Clients = 32
		if c.Benign == BenignVaried {
			c.Clients = 300
		}
	}
	if c.Span <= 0 {
		c.Span = 2 * time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "sl"
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// RunTraffic builds the lab (a learning OVS bridge standing in for the
// tenant network, the server, client and attacker namespaces, an OVS
// mirror of the server's port), runs benign load and the planned attacks
// with real tools, captures the mirror with AF_PACKET, and tears it down.
func RunTraffic(ctx context.Context, cfg TrafficConfig) (*TrafficResult, error) {
	cfg.defaults()
	if err := Available(); err != nil {
		return nil, err
	}
	for _, tool := range []string{"nmap", "hping3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("traffic lab: %s is not installed (make deps)", tool)
		}
	}
	if cfg.Benign != BenignVaried && cfg.Benign != BenignPaper {
		return nil, fmt.Errorf("traffic lab: benign profile %q is neither %s nor %s", cfg.Benign, BenignVaried, BenignPaper)
	}
	if max(cfg.Clients, 1) > 16*200 {
		return nil, fmt.Errorf("traffic lab: at most %d clients", 16*200)
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	l := &trafficLab{cfg: cfg}
	defer l.teardown()
	if err := l.build(ctx); err != nil {
		return nil, err
	}
	return l.run(ctx)
}

func (l *trafficLab) build(ctx context.Context) error {
	p := l.cfg.Prefix
	l.br = ovs.NewBridge(p + "-br")
	l.br.Delete(ctx)
	if err := l.br.EnsureLearning(ctx); err != nil {
		return err
	}
	mac := func(i int) tenant.MAC { return tenant.MAC{0x02, 0x50, 0, 0, byte(i >> 8), byte(i)} }
	var err error
	if l.server, err = AddHost(ctx, l.br, p+"-srv", p+"srv", mac(1), netip.PrefixFrom(ServerIP, 16)); err != nil {
		return err
	}
	// Addresses per namespace, and each client's address: the paper
	// profile keeps its 10.50.1.0/24 plan, the varied one counts up from
	// 10.50.10.1 (250 per /24).
	per := 8
	addr := func(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 50, 1, byte(k + 1)}) }
	ttlR := rand.New(rand.NewPCG(l.cfg.Seed, 3))
	if l.cfg.Benign == BenignVaried {
		per = 16
		addr = func(k int) netip.Addr { return netip.AddrFrom4([4]byte{10, 50, byte(10 + k/250), byte(k%250 + 1)}) }
	}
	nsCount := (l.cfg.Clients + per - 1) / per
	for n := 0; n < nsCount; n++ {
		h, err := AddHost(ctx, l.br, fmt.Sprintf("%s-c%d", p, n), fmt.Sprintf("%sc%d", p, n), mac(10+n), netip.PrefixFrom(addr(n*per), 16))
		if err != nil {
			return err
		}
		// Clients sit at different distances and run different systems:
		// their TTLs differ, as in the paper's Fig. 6 (64 and 52 most).
		ttl := []int{64, 52, 64, 128, 57, 64, 52, 118}[n%8]
		if l.cfg.Benign == BenignVaried {
			ttl = clientTTL(ttlR)
		}
		if _, err := h.Exec(ctx, "sysctl", "-qw", fmt.Sprintf("net.ipv4.ip_default_ttl=%d", ttl)); err != nil {
			return err
		}
		l.clients = append(l.clients, h)
		for i := 0; i < per && len(l.ips) < l.cfg.Clients; i++ {
			a := addr(n*per + i)
			if i > 0 {
				if _, err := h.Exec(ctx, "ip", "addr", "add", a.String()+"/16", "dev", "eth0"); err != nil {
					return err
				}
			}
			l.ips = append(l.ips, a)
			l.owner = append(l.owner, h)
		}
	}
	if l.attack, err = AddHost(ctx, l.br, p+"-atk", p+"atk", mac(99), netip.MustParsePrefix("10.50.2.66/16")); err != nil {
		return err
	}
	// The mirror: every frame to or from the server's port is copied to
	// the mirror veth; we capture on its peer in the host namespace.
	mir, peer := p+"mir", p+"mirp"
	l.mirror = peer
	run(ctx, "ip", "link", "del", mir)
	for _, c := range [][]string{
		{"ip", "link", "add", mir, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", mir, "up"}, {"ip", "link", "set", peer, "up"},
	} {
		if _, err := run(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	if err := l.br.AddPort(ctx, mir, 0); err != nil {
		return err
	}
	_, err = run(ctx, "ovs-vsctl", "--timeout=10", "--", "--id=@p", "get", "port", l.server.Port,
		"--", "--id=@o", "get", "port", mir,
		"--", "--id=@m", "create", "mirror", "name="+p+"-mirror", "select-dst-port=@p", "select-src-port=@p", "output-port=@o",
		"--", "set", "bridge", l.br.Name, "mirrors=@m")
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	// Let every host learn the others (ARP) before the capture starts.
	for _, h := range append(l.clients, l.attack) {
		h.Ping(ctx, ServerIP, 1, time.Second)
	}
	return nil
}

func (l *trafficLab) teardown() {
	ctx := context.Background()
	for _, h := range append([]*Host{l.server, l.attack}, l.clients...) {
		if h != nil {
			h.Remove(ctx, l.br)
		}
	}
	run(ctx, "ip", "link", "del", l.cfg.Prefix+"mir")
	if l.br != nil {
		l.br.Delete(ctx)
	}
}

// services starts the server's listeners: HTTP on 80, SMTP-like on 25,
// POP3-like on 110, DNS-like on UDP 53. They stop when ctx ends.
func (l *trafficLab) services(ctx context.Context, wg *sync.WaitGroup) error {
	var ls []net.Listener
	for _, port := range []int{80, 25, 110} {
		ln, err := l.server.ListenTCP(port)
		if err != nil {
			return err
		}
		ls = append(ls, ln)
	}
	udp, err := l.server.ListenUDP(53)
	if err != nil {
		return err
	}
	page := strings.Repeat("x", 20000)
	httpSrv := &http.Server{Handler: httpHandler(page), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(4)
	go func() { defer wg.Done(); httpSrv.Serve(ls[0]) }()
	for i, banner := range []string{"220 mail.lab ESMTP\r\n", "+OK POP3 ready\r\n"} {
		ln, ok := ls[i+1], "250 ok\r\n"
		if i == 1 {
			ok = "+OK\r\n"
		}
		go func() {
			defer wg.Done()
			serveConns(ln, 10*time.Second, func(c net.Conn) {
				io.WriteString(c, banner)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					line := strings.ToUpper(sc.Text())
					if strings.HasPrefix(line, "QUIT") {
						io.WriteString(c, "221 bye\r\n")
						return
					}
					io.WriteString(c, ok)
				}
			})
		}()
	}
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := udp.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if a := dnsAnswer(buf[:n]); a != nil {
				udp.WriteToUDPAddrPort(a, from)
			} else {
				udp.WriteToUDPAddrPort(buf[:n], from) // the paper profile's DNS-like echo
			}
		}
	}()
	if l.cfg.Benign == BenignVaried {
		if err := l.variedServices(ctx.Done(), wg); err != nil {
			return err
		}
	}
	go func() {
		<-ctx.Done()
		httpSrv.Close()
		for _, ln := range ls[1:] {
			ln.Close()
		}
		udp.Close()
	}()
	return nil
}

// session runs one benign client session from ip.
func (l *trafficLab) session(r *rand.Rand, i int) error {
	h, ip := l.owner[i], l.ips[i]
	kind := r.IntN(10)
	if kind == 9 { // DNS-like query over UDP
		var c *net.UDPConn
		err := h.Do(func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip.AsSlice()})
			return err
		})
		if err != nil {
			return err
		}
		defer c.Close()
		q := make([]byte, 30+r.IntN(40))
		if _, err := c.WriteToUDPAddrPort(q, netip.AddrPortFrom(ServerIP, 53)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err = c.ReadFromUDPAddrPort(q)
		return err
	}
	port := []int{80, 80, 80, 80, 25, 25, 25, 110, 110}[kind]
	var c net.Conn
	err := h.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 3 * time.Second}
		c, err = d.Dial("tcp4", netip.AddrPortFrom(ServerIP, uint16(port)).String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(c)
	switch port {
	case 80:
		fmt.Fprintf(c, "GET /?n=%d HTTP/1.0\r\nHost: lab\r\n\r\n", 200+r.IntN(19000))
		_, err = io.Copy(io.Discard, rd)
		return err
	case 25:
		rd.ReadString('\n')
		for _, cmd := range []string{"HELO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA", strings.Repeat("y", 50+r.IntN(1400)), "QUIT"} {
			fmt.Fprintf(c, "%s\r\n", cmd)
			if _, err := rd.ReadString('\n'); err != nil {
				return err
			}
		}
	case 110:
		rd.ReadString('\n')
		for _, cmd := range []string{"USER u", "PASS p", "LIST", "QUIT"} {
			fmt.Fprintf(c, "%s\r\n", cmd)
			if _, err := rd.ReadString('\n'); err != nil {
				return err
			}
		}
	}
	return nil
}

// attackCmd is the real tool invocation for a.
func (l *trafficLab) attackCmd(a nad.Attack) []string {
	srv := ServerIP.String()
	gap := func() string { // spread the packets over the attack span
		return fmt.Sprintf("u%d", max(1, int(l.cfg.Span.Microseconds())/max(1, a.Scale)))
	}
	switch a.Type {
	case nad.PortScan:
		return []string{"nmap", "-sS", "-Pn", "-n", "-T4", "--max-retries", "0", "-p", fmt.Sprintf("1-%d", a.Scale), srv}
	case nad.SYNFlood:
		return []string{"hping3", "-q", "-S", "-p", "80", "--rand-source", "-c", strconv.Itoa(a.Scale), "-i", gap(), srv}
	case nad.UDPFlood:
		return []string{"hping3", "-q", "-n", "--udp", "-p", "53", "-c", strconv.Itoa(a.Scale), "-i", gap(), srv}
	case nad.SlowScan:
		return []string{"nmap", "-sS", "-Pn", "-n", "-T2", "--max-retries", "0", "-p", fmt.Sprintf("1-%d", a.Scale), srv}
	case nad.SlowSYN:
		return []string{"hping3", "-q", "-S", "-p", "80", "--rand-source", "-c", strconv.Itoa(a.Scale), "-i", "u50000", srv}
	case nad.BruteForce:
		return []string{"(in process)", "ssh", "password guessing", strconv.Itoa(a.Scale), "logins to", srv + ":22"}
	}
	if strings.HasPrefix(a.Type, nad.Replay) {
		// At the capture's own pace, for at most 4 attack spans.
		return []string{"tcpreplay", "-q", "-i", "eth0", "--duration", strconv.Itoa(max(1, int(4*l.cfg.Span.Seconds()))), a.File}
	}
	return nil
}

// prepareReplays readdresses every replayed capture to the lab's server
// (into the output directory) and sets its scale to the packets it sends.
func (l *trafficLab) prepareReplays(attacks []nad.Attack) error {
	for i := range attacks {
		a := &attacks[i]
		if !strings.HasPrefix(a.Type, nad.Replay) {
			continue
		}
		if _, err := exec.LookPath("tcpreplay"); err != nil {
			return fmt.Errorf("traffic lab: tcpreplay is not installed (make deps)")
		}
		out := filepath.Join(l.cfg.Out, fmt.Sprintf("replay-%d-%s", i, filepath.Base(a.File)))
		st, err := RewriteToServer(a.File, out, ServerIP, l.server.MAC, l.attack.MAC)
		if err != nil {
			return err
		}
		a.Source = fmt.Sprintf("%s (victim %s readdressed; %d packets kept, %d skipped)", a.File, st.Victim, st.Kept, st.Skipped)
		a.File, a.Scale = out, st.Kept
	}
	return nil
}

func (l *trafficLab) run(ctx context.Context) (*TrafficResult, error) {
	cfg := l.cfg
	res := &TrafficResult{Capture: filepath.Join(cfg.Out, "capture.pcap"), LabelsFile: filepath.Join(cfg.Out, "labels.json")}
	f, err := os.Create(res.Capture)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	pw, err := capture.NewWriter(bw, capture.LinkEthernet)
	if err != nil {
		return nil, err
	}
	live, err := capture.OpenLive(l.mirror)
	if err != nil {
		return nil, err
	}
	capDone := make(chan error, 1)
	go func() {
		for {
			p, err := live.Next()
			if err != nil {
				if err == capture.ErrClosed {
					err = nil
				}
				capDone <- err
				return
			}
			if err := pw.WritePacket(p.Time, p.Data); err != nil {
				capDone <- err
				return
			}
		}
	}()

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if err := l.services(runCtx, &wg); err != nil {
		stop()
		live.Close()
		return nil, err
	}
	start := time.Now()
	res.Labels = nad.Labels{Seed: cfg.Seed, Server: ServerIP.String(), Start: start}
	fmt.Fprintf(cfg.Progress, "traffic lab: %s of benign load (%.0f sessions/s mean, %d clients), %d attacks\n",
		cfg.Duration, cfg.Rate, len(l.ips), len(cfg.Attacks))

	// Benign load: a Poisson process whose rate follows a compressed day.
	var mu sync.Mutex // guards the session counters
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(cfg.Seed, 1))
		sem := make(chan struct{}, 64)
		longSem := make(chan struct{}, 6) // long-lived downloads at once
		var sw sync.WaitGroup
		defer sw.Wait()
		varied := cfg.Benign == BenignVaried
		pop := newPopularity(r, len(l.ips))
		var noise arNoise
		for {
			el := time.Since(start)
			if el >= cfg.Duration || runCtx.Err() != nil {
				return
			}
			rate := cfg.Rate * (1 + 0.5*math.Sin(2*math.Pi*el.Seconds()/cfg.Period.Seconds()))
			if varied {
				rate *= noise.at(r, el)
			}
			time.Sleep(time.Duration(r.ExpFloat64() / max(rate, 0.1) * float64(time.Second)))
			i := r.IntN(len(l.ips))
			if varied {
				i = pop.pick()
			}
			sr := rand.New(rand.NewPCG(r.Uint64(), 2))
			long := false
			if varied && r.Float64() < 0.01 {
				select {
				case longSem <- struct{}{}:
					long = true
				default:
				}
			}
			select {
			case sem <- struct{}{}:
			default:
				if long {
					<-longSem
				}
				continue // overloaded: skip rather than queue
			}
			sw.Add(1)
			go func() {
				defer sw.Done()
				defer func() { <-sem }()
				var err error
				if varied {
					err = l.variedSession(sr, i, long)
				} else {
					err = l.session(sr, i)
				}
				if long {
					<-longSem
				}
				mu.Lock()
				res.Sessions++
				if err != nil {
					res.Failed++
				}
				mu.Unlock()
			}()
		}
	}()

	// Attacks, in time order, with the real tools.
	attacks := append([]nad.Attack(nil), cfg.Attacks...)
	sort.Slice(attacks, func(i, j int) bool { return attacks[i].At < attacks[j].At })
	if err := l.prepareReplays(attacks); err != nil {
		stop()
		wg.Wait()
		live.Close()
		<-capDone
		return nil, err
	}
	for i := range attacks {
		a := &attacks[i]
		if d := time.Until(start.Add(a.At)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		args := l.attackCmd(*a)
		a.Tool = strings.Join(args, " ")
		switch {
		case a.Type == nad.SYNFlood:
			a.Source = "random (spoofed) via 10.50.2.66"
		case a.Source == "":
			a.Source = "10.50.2.66"
		}
		a.Start = time.Now()
		var out []byte
		var err error
		if a.Type == nad.BruteForce {
			err = l.bruteForce(rand.New(rand.NewPCG(cfg.Seed, uint64(i))), a.Scale)
		} else {
			out, err = l.attack.Exec(ctx, args...)
		}
		a.End = time.Now()
		// hping3 exits non-zero when nothing answers (spoofed sources, UDP
		// without a reply), so only nmap's and tcpreplay's failures are errors.
		if err != nil && a.Type != nad.SYNFlood && a.Type != nad.UDPFlood && a.Type != nad.SlowSYN {
			a.Err = strings.TrimSpace(string(out) + " " + err.Error())
		}
		fmt.Fprintf(cfg.Progress, "traffic lab: %s scale %d at %s took %s\n", a.Type, a.Scale, a.Start.Sub(start).Round(time.Millisecond), a.End.Sub(a.Start).Round(time.Millisecond))
	}
	if d := time.Until(start.Add(cfg.Duration)); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	stop()
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // let the mirror drain
	res.Labels.End = time.Now()
	res.Labels.Attacks = attacks
	live.Close()
	if err := <-capDone; err != nil {
		return nil, err
	}
	res.Packets, res.Dropped, _ = live.Stats()
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	lb, _ := json.MarshalIndent(res.Labels, "", "  ")
	if err := os.WriteFile(res.LabelsFile, lb, 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "traffic lab: %d packets captured, %d dropped by the kernel; %d sessions (%d failed)\n", res.Packets, res.Dropped, res.Sessions, res.Failed)
	return res, ctx.Err()
}
