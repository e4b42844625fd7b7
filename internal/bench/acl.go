package bench

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/daemon"
	"secaas/internal/flow"
	"secaas/internal/lab"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// ACLOptions configure the access-control benchmark.
type ACLOptions struct {
	ACRs     int           // ACRs for compile/apply timings (default 10000)
	Duration time.Duration // per forwarding case and round (paper: 200 s)
	Rounds   int           // forwarding rounds; cases alternate, medians reported (default 3)
	// InstrRounds: rounds of the instruction count under callgrind (0: not
	// run); InstrPings: flood pings per case and round (default 3000).
	InstrRounds, InstrPings int
	// ApplyOnly: only the compile and apply timings (no API, forwarding
	// or instruction runs).
	ApplyOnly bool
	Progress  io.Writer
}

// ACLResult is what secaas bench acl measured.
type ACLResult struct {
	ACRs, Flows         int
	Validate, Compile   time.Duration
	ApplyFull, ApplyOne time.Duration
	// One ACR added to (and then removed from) the switch that enforces
	// the ACRs: p90 of the additions, median of the removals, samples.
	ApplyOneP90, RemoveOne time.Duration
	OneSamples             int
	PlainReplace           time.Duration
	PlainFlows             int
	APIToEnforce           []time.Duration // small policy, then with ACRs more on the switch
	APIToEnforceLabels     []string
	Forwarding             []ForwardCase
	// Overheads: the extra ACRs' cost, from the rounds' paired differences
	// (case 2 vs 1, case 4 vs 3, measured back to back in random order).
	Overheads []Overhead
	Pinned    bool // ovs-vswitchd on core 0, the load on core 1
	// The forwarding pairs counted in instructions per packet (callgrind).
	Instr          []InstrCase
	InstrOverheads []InstrOverhead
	InstrPings     int
	InstrErr       string // why the instruction count did not run
}

// Overhead is the relative cost of the extra ACRs over rounds: each round
// measures the pair back to back (in random order), so slow drifts of the
// machine cancel; the mean paired difference comes with a 95 % confidence
// interval (Student's t).
type Overhead struct {
	Pair              string  // "2 vs 1"
	CPUMean, CPUHalf  float64 // ovs-vswitchd CPU, relative %, mean ± half-width
	PktMean, PktHalf  float64 // CPU time per packet, relative %
	RTTMean, RTTHalf  float64 // ping round trip under load, relative %
	PaperCPU          float64 // the paper's relative difference, %
	Rounds            int
	CPUDiffs, PktDiff []float64
	RTTDiffs          []float64
}

// ForwardCase is one row of the paper's Tables 3/4.
type ForwardCase struct {
	ID        int
	ACRs      string
	RateMbps  int
	Scenario  string
	GotMbps   float64
	OVSCPU    float64 // ovs-vswitchd CPU, % of one core
	OVSCPUMin float64 // over the rounds
	OVSCPUMax float64
	NsPerPkt  float64 // ovs-vswitchd CPU time per packet its datapath received
	MemPct    float64 // ovs-vswitchd RSS, % of host memory
	RTTAvgMs  float64
	RTTMdevMs float64
	PaperCPU  float64
	PaperMem  float64
	// Datapath cache statistics of the run (dpif-netdev/pmd-stats-show):
	// where the extra ACRs could cost, they cost here.
	EMCHitPct       float64
	Upcalls         float64
	SubtableLookups float64 // avg. subtable lookups per megaflow hit
}

const benchBridge = "secaas-bench"

// median is the middle value (the upper one of an even count).
// quantile is the q-quantile of ds (nearest rank).
func quantile[T cmp.Ordered](ds []T, q float64) T {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median[T cmp.Ordered](ds []T) T {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func (o *ACLOptions) say(format string, a ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", a...)
	}
}

// RunACL runs every part of the access-control benchmark.
func RunACL(ctx context.Context, o ACLOptions) (*ACLResult, error) {
	if o.ACRs == 0 {
		o.ACRs = 10000
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if err := lab.Available(); err != nil {
		return nil, err
	}
	if err := ovs.Available(ctx); err != nil {
		return nil, fmt.Errorf("open vswitch is not running (make ovs): %w", err)
	}
	res := &ACLResult{ACRs: o.ACRs}
	br := ovs.NewBridge(benchBridge)
	br.Delete(ctx)
	if err := br.Ensure(ctx); err != nil {
		return nil, err
	}
	defer br.Delete(context.Background())

	// 1. Validate + compile.
	o.say("compile: %d ACRs", o.ACRs)
	big := flow.BigDomain(100, o.ACRs)
	var vals, comps []time.Duration
	var set *flow.Set
	var n *tenant.Net
	for i := 0; i < 7; i++ {
		t0 := time.Now()
		var err error
		n, err = tenant.NewNet([]tenant.Domain{big})
		if err != nil {
			return nil, err
		}
		t1 := time.Now()
		ports := flow.Ports{}
		for k, vm := range n.Domains[0].VMs {
			ports[vm.Port] = uint32(k + 1)
		}
		if set, err = flow.Compile(n, ports); err != nil {
			return nil, err
		}
		vals, comps = append(vals, t1.Sub(t0)), append(comps, time.Since(t1))
	}
	res.Validate, res.Compile, res.Flows = median(vals), median(comps), len(set.Flows)

	// 2. Atomic apply on the real bridge, with the VMs' ports attached.
	o.say("apply: %d flows on %s", res.Flows, benchBridge)
	var links []string
	defer func() {
		for _, l := range links {
			exec.Command("ip", "link", "del", l).Run()
		}
	}()
	for _, vm := range n.Domains[0].VMs {
		exec.Command("ip", "link", "del", vm.Port).Run()
		if out, err := exec.CommandContext(ctx, "ip", "link", "add", vm.Port, "type", "veth", "peer", "name", vm.Port+"x").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("veth %s: %v: %s", vm.Port, err, out)
		}
		links = append(links, vm.Port)
		exec.CommandContext(ctx, "ip", "link", "set", vm.Port, "up").Run()
		if err := br.AddPort(ctx, vm.Port, 0); err != nil {
			return nil, err
		}
	}
	var fulls, ones, dels []time.Duration
	const oneRounds = 3
	for i := 0; i < oneRounds; i++ {
		if err := br.DelFlows(ctx, ""); err != nil {
			return nil, err
		}
		// A fresh agent does not know the switch: full replacement.
		a := agent.New(br, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
		t0 := time.Now()
		if err := a.Apply(ctx, []tenant.Domain{big}, nil); err != nil {
			return nil, err
		}
		fulls = append(fulls, time.Since(t0))
		// Then one ACR at a time, somewhere in the order, added and
		// removed again: each change is one rule's flows.
		for k := 0; k < 11; k++ {
			changed := big
			changed.Subnets = slices.Clone(big.Subnets)
			sub := &changed.Subnets[k%len(changed.Subnets)]
			sub.ACRs = slices.Insert(slices.Clone(sub.ACRs), (k*37)%len(sub.ACRs), tenant.ACR{Priority: (k * 97) % 1000, Action: tenant.Pass,
				Proto: "udp", DstPort: tenant.PortRange{Lo: uint16(9000 + k), Hi: uint16(9000 + k)}})
			t0 = time.Now()
			if err := a.Apply(ctx, []tenant.Domain{changed}, nil); err != nil {
				return nil, err
			}
			ones = append(ones, time.Since(t0))
			t0 = time.Now()
			if err := a.Apply(ctx, []tenant.Domain{big}, nil); err != nil {
				return nil, err
			}
			dels = append(dels, time.Since(t0))
		}
		o.say("apply: round %d of %d: full %s, one ACR added %s (median so far)", i+1, oneRounds, ms(fulls[i]), ms(median(ones)))
	}
	res.ApplyFull, res.ApplyOne, res.RemoveOne, res.OneSamples = median(fulls), median(ones), median(dels), len(ones)
	res.ApplyOneP90 = quantile(ones, 0.9)
	// Reference: 10k plain flows with ovs-ofctl alone.
	var plain strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&plain, "table=0, priority=%d, tcp,nw_dst=10.%d.%d.%d,tp_dst=%d actions=drop\n", 1+i%60000, i>>16&255, i>>8&255, i&255, 1+i%60000)
	}
	res.PlainFlows = 10000
	var plains []time.Duration
	for i := 0; i < 3; i++ {
		br.DelFlows(ctx, "")
		t0 := time.Now()
		if err := br.Replace(ctx, plain.String()); err != nil {
			return nil, err
		}
		plains = append(plains, time.Since(t0))
	}
	res.PlainReplace = median(plains)
	br.DelFlows(ctx, "")
	if o.ApplyOnly {
		return res, nil
	}

	// 3. API change -> enforcement, measured with real packets.
	if err := apiToEnforce(ctx, o, br, res); err != nil {
		return nil, fmt.Errorf("api to enforcement: %w", err)
	}
	// 4. The paper's Tables 3/4.
	if err := forwarding(ctx, o, br, res); err != nil {
		return nil, fmt.Errorf("forwarding: %w", err)
	}
	// 5. The same pairs in instructions, on a private switch under
	// callgrind. Both switches' userspace datapaths would want the same
	// host device (ovs-netdev), so the host's bench bridge goes first.
	if o.InstrRounds > 0 {
		br.Delete(ctx)
		if o.InstrPings <= 0 {
			o.InstrPings = 3000
		}
		res.InstrPings = o.InstrPings
		if err := instructions(ctx, o, res); err != nil {
			// The tables so far stand on their own.
			res.InstrErr = err.Error()
			o.say("instructions: %v", err)
		}
	}
	return res, nil
}

// twoVMs is the domain of the enforcement and forwarding experiments: VA and
// VB in one subnet, P1 outside behind an uplink, and the paper's 7 ACRs.
func twoVMs(extra int) tenant.Domain {
	d := tenant.Domain{TID: 300, Name: "bench", Tenant: "bench", Uplinks: []string{"bup"},
		Subnets: []tenant.Subnet{{Name: "s", CIDR: "10.30.0.0/24", VMs: []tenant.VM{
			{Name: "VA", MAC: "02:30:00:00:00:0a", IP: "10.30.0.10", Port: "bva"},
			{Name: "VB", MAC: "02:30:00:00:00:0b", IP: "10.30.0.11", Port: "bvb"}}}}}
	p1 := "10.30.0.100"
	d.Subnets[0].ACRs = []tenant.ACR{
		{Priority: 10, SrcMAC: []string{"VA", "VB"}, DstMAC: []string{"VA", "VB"}, Action: tenant.Pass},
		{Priority: 9, SrcIP: []string{"VA"}, DstIP: []string{p1}, Action: tenant.Pass},
		{Priority: 9, SrcIP: []string{p1}, DstIP: []string{"VA"}, Action: tenant.Pass},
		{Priority: 8, Proto: "icmp", Action: tenant.Pass},
		{Priority: 7, Proto: "tcp", DstPort: tenant.PortRange{Lo: 22, Hi: 22}, Action: tenant.Pass},
		{Priority: 6, Proto: "udp", DstPort: tenant.PortRange{Lo: 53, Hi: 53}, Action: tenant.Pass},
		{Priority: 1, Action: tenant.Drop},
	}
	for i := 0; i < extra; i++ {
		d.Subnets[0].ACRs = append(d.Subnets[0].ACRs, tenant.ACR{Priority: 2 + i%5, Proto: []string{"tcp", "udp"}[i%2],
			SrcIP: []string{fmt.Sprintf("172.%d.%d.0/24", 16+i%16, i/16%256)}, DstPort: tenant.PortRange{Lo: uint16(1000 + i), Hi: uint16(1000 + i)},
			Action: []tenant.Action{tenant.Pass, tenant.Drop}[i%2]})
	}
	return d
}

type benchLab struct {
	hosts map[string]*lab.Host
	p1    *lab.Host
	ext   *ovs.Bridge // the "physical network" behind the uplink
}

func (l *benchLab) close(br *ovs.Bridge) {
	ctx := context.Background()
	lab.RemoveAll(ctx, br, l.hosts)
	if l.p1 != nil {
		l.p1.Remove(ctx, l.ext)
	}
	br.DelPort(ctx, "bup")
	if l.ext != nil {
		l.ext.Delete(ctx)
	}
}

func buildLab(ctx context.Context, br *ovs.Bridge) (*benchLab, error) {
	n, err := tenant.NewNet([]tenant.Domain{twoVMs(0)})
	if err != nil {
		return nil, err
	}
	l := &benchLab{}
	if l.hosts, err = lab.HostsFor(ctx, br, n, "sb-", nil); err != nil {
		return nil, err
	}
	// P1: an outside host behind the uplink. A learning bridge stands in
	// for the physical network: the uplink is a patch port (802.1Q trunk)
	// into it, and P1 sits on an access port of VLAN 300 (the TID).
	l.ext = br.Sibling("sb-ext")
	if err := l.ext.EnsureLearning(ctx); err != nil {
		l.close(br)
		return nil, err
	}
	if err := br.AddPatch(ctx, "bup", "bupx"); err != nil {
		l.close(br)
		return nil, err
	}
	if err := l.ext.AddPatch(ctx, "bupx", "bup"); err != nil {
		l.close(br)
		return nil, err
	}
	mac, _ := tenant.ParseMAC("02:30:00:00:00:99")
	if l.p1, err = lab.AddHost(ctx, l.ext, "sb-p1", "bp1", mac, netip.MustParsePrefix("10.30.0.100/24")); err != nil {
		l.close(br)
		return nil, err
	}
	if err := l.ext.SetAccessTag(ctx, "bp1", 300); err != nil {
		l.close(br)
		return nil, err
	}
	return l, nil
}

func apiToEnforce(ctx context.Context, o ACLOptions, br *ovs.Bridge, res *ACLResult) error {
	l, err := buildLab(ctx, br)
	if err != nil {
		return err
	}
	defer l.close(br)
	for _, withBig := range []bool{false, true} {
		label := "7 ACRs on the switch"
		if withBig {
			label = fmt.Sprintf("7 + %d ACRs on the switch", o.ACRs)
		}
		o.say("api -> enforcement: %s", label)
		d, err := measureAPIToEnforce(ctx, br, l, withBig, o.ACRs)
		if err != nil {
			return err
		}
		res.APIToEnforce = append(res.APIToEnforce, d)
		res.APIToEnforceLabels = append(res.APIToEnforceLabels, label)
	}
	return nil
}

func measureAPIToEnforce(ctx context.Context, br *ovs.Bridge, l *benchLab, withBig bool, nACR int) (time.Duration, error) {
	const admin = "bench-admin-token-0000"
	roots, err := os.MkdirTemp("", "secaas-bench-roots-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(roots)
	d, err := daemon.New(ctx, daemon.Config{DB: ":memory:", Bridge: br, AdminToken: admin,
		ImageRoot: filepath.Join(roots, "images"), RunRoot: filepath.Join(roots, "run"), ShmRoot: filepath.Join(roots, "shm"),
		DataDir: filepath.Join(roots, "data"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, err
	}
	defer d.Close()
	ctl := d.Controller
	srv := httptest.NewServer(d.API)
	defer srv.Close()
	who := controller.Caller{Admin: true}
	if _, _, err := ctl.CreateTenant(ctx, who, "bench", ""); err != nil {
		return 0, err
	}
	base := twoVMs(0)
	base.Subnets[0].ACRs[0].DstMAC = []string{"VA"} // VA->VB blocked at first
	if _, err := ctl.CreateDomain(ctx, who, base); err != nil {
		return 0, err
	}
	if withBig {
		big := flow.BigDomain(400, nACR)
		big.Tenant = "bench"
		if _, err := ctl.CreateDomain(ctx, who, big); err != nil {
			return 0, err
		}
	}
	va, vb := l.hosts["bva"], l.hosts["bvb"]
	rc, err := vb.ListenUDP(5001)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	sc, err := va.ListenUDP(5002)
	if err != nil {
		return 0, err
	}
	defer sc.Close()
	dst := netip.AddrPortFrom(vb.IP.Addr(), 5001)
	// Warm ARP, and make sure nothing passes yet.
	sc.WriteToUDPAddrPort([]byte("x"), dst)
	rc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 16)
	if _, _, err := rc.ReadFromUDPAddrPort(buf); err == nil {
		return 0, fmt.Errorf("VA->VB passed before the change")
	}
	got := make(chan time.Time, 1)
	go func() {
		rc.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := rc.ReadFromUDPAddrPort(buf); err == nil {
			got <- time.Now()
		}
		close(got)
	}()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				sc.WriteToUDPAddrPort([]byte("x"), dst)
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	body := `{"priority": 11, "srcmac": ["VA"], "dstmac": ["VB"], "action": "pass"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/domains/300/subnets/s/acrs", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return 0, fmt.Errorf("POST acr: %s", resp.Status)
	}
	at, ok := <-got
	if !ok {
		return 0, fmt.Errorf("the new rule never let a packet through")
	}
	return at.Sub(t0), nil
}

// benchCase is one forwarding case: the policy on the switch and where the
// load goes.
type benchCase struct {
	ID       int
	ACRs     string // as the paper writes them
	Extra    int    // ACRs added to twoVMs' 7
	RateMbps int    // iperf3's rate; 0: unpaced
	Scenario string
	Outside  bool    // VA -> P1 through the uplink, else VA -> VB
	PaperCPU float64 // host CPU %, the paper's Tables 3/4 (0: not in the paper)
}

// paperCases are the paper's Tables 3/4, in pairs: without and with the
// extra ACRs. Both the timed and the counted stage run them.
var paperCases = []benchCase{
	{ID: 1, ACRs: "7", RateMbps: 200, Scenario: "VA -> VB (same subnet)", PaperCPU: 0.685},
	{ID: 2, ACRs: "7+650", Extra: 650, RateMbps: 200, Scenario: "VA -> VB (same subnet)", PaperCPU: 0.695},
	{ID: 3, ACRs: "7", RateMbps: 100, Scenario: "VA -> P1 (outside, via uplink)", Outside: true, PaperCPU: 0.675},
	{ID: 4, ACRs: "7+100", Extra: 100, RateMbps: 100, Scenario: "VA -> P1 (outside, via uplink)", Outside: true, PaperCPU: 0.680},
}

// paperMem is the paper's host memory % in every case of Tables 3/4.
const paperMem = 0.063

// unpacedCases are not in the paper: the pair 1/2 with the sender
// unpaced. Large receive batches make the switch's cost per packet
// steadier than at a low fixed rate, where it depends on how many packets
// each wake-up happens to find.
var unpacedCases = []benchCase{
	{ID: 5, ACRs: "7", Scenario: "VA -> VB (same subnet), unpaced"},
	{ID: 6, ACRs: "7+650", Extra: 650, Scenario: "VA -> VB (same subnet), unpaced"},
}

// target is the address the load is sent to: VB, or P1 outside the domain.
func (c benchCase) target() netip.Addr {
	if c.Outside {
		return netip.MustParseAddr("10.30.0.100")
	}
	return netip.MustParseAddr("10.30.0.11")
}

var rttRE = regexp.MustCompile(`= [\d.]+/([\d.]+)/[\d.]+/([\d.]+) ms`)

func forwarding(ctx context.Context, o ACLOptions, br *ovs.Bridge, res *ACLResult) error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("iperf3 is not installed (make deps)")
	}
	l, err := buildLab(ctx, br)
	if err != nil {
		return err
	}
	defer l.close(br)
	a := agent.New(br, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	bcs := append(slices.Clone(paperCases), unpacedCases...)
	cases := make([]ForwardCase, len(bcs))
	for i, bc := range bcs {
		cases[i] = ForwardCase{ID: bc.ID, ACRs: bc.ACRs, RateMbps: bc.RateMbps, Scenario: bc.Scenario, PaperCPU: bc.PaperCPU}
		if bc.PaperCPU > 0 {
			cases[i].PaperMem = paperMem
		}
	}
	if pid, err := vswitchdPID(); err == nil {
		undo, ok := pinOVS(ctx, pid)
		pinned.Store(ok)
		res.Pinned = ok
		defer func() { undo(); pinned.Store(false) }()
	}
	// Each round measures both pairs (1, 2) and (3, 4) back to back, each
	// pair in a random order, so that slow drifts of the machine and any
	// order effect hit both members alike; tables show medians over the
	// rounds, overheads the mean paired difference.
	runs := make([][]ForwardCase, len(cases))
	err = pairedRounds(o.Rounds, 34, len(cases), func(round, i int) error {
		c, bc := cases[i], bcs[i]
		o.say("forwarding round %d/%d, case %d: %s ACRs, %s, %s, %s", round, o.Rounds, c.ID, c.ACRs, rate(c.RateMbps), c.Scenario, o.Duration)
		if err := a.Apply(ctx, []tenant.Domain{twoVMs(bc.Extra)}, nil); err != nil {
			return err
		}
		server := l.hosts["bvb"]
		if bc.Outside {
			server = l.p1
		}
		if err := runCase(ctx, &c, l.hosts["bva"], server, bc.target().String(), o.Duration); err != nil {
			return fmt.Errorf("case %d: %w", c.ID, err)
		}
		runs[i] = append(runs[i], c)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range cases {
		cases[i] = medianCase(runs[i])
	}
	res.Forwarding = cases
	for pair := 0; pair < len(cases); pair += 2 {
		res.Overheads = append(res.Overheads, pairedOverhead(runs[pair], runs[pair+1], cases[pair], cases[pair+1]))
	}
	return nil
}

// pairedRounds calls run for every case of n (pairs 0-1, 2-3, ...) in
// each of rounds rounds, the two members of a pair back to back in an
// order drawn from seed, so that slow drifts of the machine and any order
// effect hit both alike.
func pairedRounds(rounds int, seed uint64, n int, run func(round, i int) error) error {
	order := rand.New(rand.NewPCG(uint64(rounds), seed))
	for round := 1; round <= rounds; round++ {
		for pair := 0; pair < n; pair += 2 {
			idx := []int{pair, pair + 1}
			if order.IntN(2) == 1 {
				idx[0], idx[1] = idx[1], idx[0]
			}
			for _, i := range idx {
				if err := run(round, i); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// pairedOverhead is the relative cost of b over a, round by round.
func pairedOverhead(as, bs []ForwardCase, a, b ForwardCase) Overhead {
	ov := Overhead{Pair: fmt.Sprintf("%d vs %d", b.ID, a.ID), Rounds: len(as), PaperCPU: math.NaN()}
	if a.PaperCPU > 0 {
		ov.PaperCPU = (b.PaperCPU - a.PaperCPU) / a.PaperCPU * 100
	}
	for i := range as {
		if as[i].OVSCPU > 0 {
			ov.CPUDiffs = append(ov.CPUDiffs, (bs[i].OVSCPU-as[i].OVSCPU)/as[i].OVSCPU*100)
		}
		if as[i].NsPerPkt > 0 && bs[i].NsPerPkt > 0 {
			ov.PktDiff = append(ov.PktDiff, (bs[i].NsPerPkt-as[i].NsPerPkt)/as[i].NsPerPkt*100)
		}
		if as[i].RTTAvgMs > 0 && bs[i].RTTAvgMs > 0 {
			ov.RTTDiffs = append(ov.RTTDiffs, (bs[i].RTTAvgMs-as[i].RTTAvgMs)/as[i].RTTAvgMs*100)
		}
	}
	ov.RTTMean, ov.RTTHalf = meanCI(ov.RTTDiffs)
	ov.CPUMean, ov.CPUHalf = meanCI(ov.CPUDiffs)
	ov.PktMean, ov.PktHalf = meanCI(ov.PktDiff)
	return ov
}

// meanCI returns the mean of xs and the half-width of its 95 % confidence
// interval (Student's t; NaN for fewer than two values).
func meanCI(xs []float64) (mean, half float64) {
	n := len(xs)
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(n)
	if n < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	sd := math.Sqrt(ss / float64(n-1))
	return mean, t975(n-1) * sd / math.Sqrt(float64(n))
}

// t975 is the 97.5 % quantile of Student's t with df degrees of freedom.
func t975(df int) float64 {
	table := []float64{12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	switch {
	case df < 1:
		return math.NaN()
	case df <= len(table):
		return table[df-1]
	case df <= 60:
		return 2.000 + (2.042-2.000)*float64(60-df)/30
	}
	return 1.960 + (2.000-1.960)*60/float64(df)
}

// With two cores or more, the forwarding experiment gives ovs-vswitchd
// (all its threads) core 0 and the load (iperf3, ping) core 1, so that the
// switch's CPU time is not jittered by competing with its own load.
const ovsCPU, loadCPUs = "0", "1"

// pinOVS pins every thread of ovs-vswitchd to ovsCPU and returns the undo.
func pinOVS(ctx context.Context, pid int) (func(), bool) {
	if numCPU() < 2 {
		return func() {}, false
	}
	if err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", ovsCPU, strconv.Itoa(pid)).Run(); err != nil {
		return func() {}, false
	}
	all := fmt.Sprintf("0-%d", numCPU()-1)
	return func() { exec.Command("taskset", "-a", "-p", "-c", all, strconv.Itoa(pid)).Run() }, true
}

// loadCmd runs ip ARGS on the load's core (when the switch is pinned).
func loadCmd(ctx context.Context, args ...string) *exec.Cmd {
	if pinned.Load() {
		return exec.CommandContext(ctx, "taskset", append([]string{"-c", loadCPUs, "ip"}, args...)...)
	}
	return exec.CommandContext(ctx, "ip", args...)
}

var pinned atomic.Bool

func medianCase(rs []ForwardCase) ForwardCase {
	med := func(f func(ForwardCase) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	c := rs[0]
	c.GotMbps = med(func(r ForwardCase) float64 { return r.GotMbps })
	c.OVSCPU = med(func(r ForwardCase) float64 { return r.OVSCPU })
	c.NsPerPkt = med(func(r ForwardCase) float64 { return r.NsPerPkt })
	c.OVSCPUMin, c.OVSCPUMax = rs[0].OVSCPU, rs[0].OVSCPU
	for _, r := range rs {
		c.OVSCPUMin, c.OVSCPUMax = min(c.OVSCPUMin, r.OVSCPU), max(c.OVSCPUMax, r.OVSCPU)
	}
	c.MemPct = med(func(r ForwardCase) float64 { return r.MemPct })
	c.RTTAvgMs = med(func(r ForwardCase) float64 { return r.RTTAvgMs })
	c.RTTMdevMs = med(func(r ForwardCase) float64 { return r.RTTMdevMs })
	c.EMCHitPct = med(func(r ForwardCase) float64 { return r.EMCHitPct })
	c.Upcalls = med(func(r ForwardCase) float64 { return r.Upcalls })
	c.SubtableLookups = med(func(r ForwardCase) float64 { return r.SubtableLookups })
	return c
}

func runCase(ctx context.Context, c *ForwardCase, client, server *lab.Host, target string, dur time.Duration) error {
	srv := loadCmd(ctx, "netns", "exec", server.NS, "iperf3", "-s", "-1", "-B", target)
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)
	client.Ping(ctx, netip.MustParseAddr(target), 1, time.Second) // ARP
	pid, err := vswitchdPID()
	if err != nil {
		return err
	}
	exec.CommandContext(ctx, "ovs-appctl", "dpif-netdev/pmd-stats-clear").Run()
	p0, err := cpuNanos(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	pingc := loadCmd(ctx, "netns", "exec", client.NS, "ping", "-n", "-q", "-i", "0.05", "-w", strconv.Itoa(int(dur.Seconds())), target)
	var pingOut strings.Builder
	pingc.Stdout = &pingOut
	if err := pingc.Start(); err != nil {
		return err
	}
	out, err := loadCmd(ctx, "netns", "exec", client.NS, "iperf3", "-u", "-c", target, "-b", fmt.Sprintf("%dM", c.RateMbps),
		"-t", strconv.Itoa(int(dur.Seconds())), "-f", "m").CombinedOutput()
	pingc.Wait()
	wall := time.Since(t0).Seconds()
	if err != nil {
		return fmt.Errorf("iperf3: %v: %s", err, out)
	}
	p1, err := cpuNanos(pid)
	if err != nil {
		return err
	}
	c.OVSCPU = float64(p1-p0) / 1e9 / wall * 100
	c.MemPct = rssPct(pid)
	if m := regexp.MustCompile(`([\d.]+) Mbits/sec\s+[\d.]+ ms\s+\d+/\d+ \([\d.e+-]+%\)\s+receiver`).FindSubmatch(out); m != nil {
		c.GotMbps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if st, err := exec.CommandContext(ctx, "ovs-appctl", "dpif-netdev/pmd-stats-show").Output(); err == nil {
		stats := pmdStats(string(st))
		if rx := stats["packets received"]; rx > 0 {
			c.EMCHitPct = stats["emc hits"] / rx * 100
			c.NsPerPkt = float64(p1-p0) / rx
		}
		c.Upcalls = stats["miss with success upcall"] + stats["miss with failed upcall"]
		c.SubtableLookups = stats["avg. subtable lookups per megaflow hit"]
	}
	if m := rttRE.FindStringSubmatch(pingOut.String()); m != nil {
		c.RTTAvgMs, _ = strconv.ParseFloat(m[1], 64)
		c.RTTMdevMs, _ = strconv.ParseFloat(m[2], 64)
	}
	return nil
}

// pmdStats sums "name: value" lines over the datapath's threads (averages
// are taken from the last thread that reports them).
func pmdStats(s string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(v + " x")[0], 64)
		if err != nil {
			continue
		}
		if strings.HasPrefix(k, "avg.") {
			out[k] = f
		} else {
			out[k] += f
		}
	}
	return out
}

func vswitchdPID() (int, error) {
	b, err := os.ReadFile("/var/run/openvswitch/ovs-vswitchd.pid")
	if err != nil {
		return 0, fmt.Errorf("ovs-vswitchd pid: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// cpuNanos returns the CPU time the process has used, in nanoseconds, summed
// over its threads from /proc/PID/task/TID/schedstat (the scheduler's own
// accounting, exact to the nanosecond, where /proc/PID/stat counts 10 ms
// ticks).
func cpuNanos(pid int) (uint64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, t := range tids {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("schedstat of %s: %w", t.Name(), err)
		}
		sum += n
	}
	return sum, nil
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/stat")
	return max(1, strings.Count(string(b), "\ncpu")) // cpu0, cpu1, ...
}

func rssPct(pid int) float64 {
	var rss, total float64
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	m, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(m), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			total, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	if total == 0 {
		return 0
	}
	return rss / total * 100
}

// rate is an iperf3 rate in Mbit/s for the tables (0: unpaced).
func rate(mbps int) string {
	if mbps == 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%d Mbit/s", mbps)
}

// orDash formats v, or "-" where the paper has no figure (0 or NaN).
func orDash(format string, v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// WriteACL prints the result as Markdown tables.
func WriteACL(w io.Writer, r *ACLResult, o ACLOptions) {
	pin := ""
	if r.Pinned {
		pin = "; ovs-vswitchd pinned to core " + ovsCPU + ", iperf3 and ping to core " + loadCPUs
	}
	fmt.Fprintf(w, "### Access control (secaas bench acl)\n\nMachine: %d cores; Open vSwitch userspace (netdev) datapath; forwarding: %d rounds of %s per case, each round the pairs back to back in random order, medians (the paper ran 200 s once)%s.\n\n", numCPU(), o.Rounds, o.Duration, pin)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| measurement\t ours\t goal / reference\t")
	fmt.Fprintln(tw, "|---\t---\t---\t")
	fmt.Fprintf(tw, "| validate %d ACRs\t %s\t -\t\n", r.ACRs, ms(r.Validate))
	fmt.Fprintf(tw, "| compile %d ACRs -> %d flows\t %s\t <= 100 ms\t\n", r.ACRs, r.Flows, ms(r.Compile))
	fmt.Fprintf(tw, "| atomic apply of the %d flows: validate + compile + full replacement in one bundle\t %s\t <= 500 ms\t\n", r.Flows, ms(r.ApplyFull))
	fmt.Fprintf(tw, "| one ACR added on top of them, to the switch: validate + compile (changed rules only) + difference in one bundle, median of %d (p90)\t %s (%s)\t <= 20 ms median (issue 18; 93 ms before)\t\n", r.OneSamples, ms(r.ApplyOne), ms(r.ApplyOneP90))
	fmt.Fprintf(tw, "| that ACR removed again, median\t %s\t -\t\n", ms(r.RemoveOne))
	fmt.Fprintf(tw, "| reference: ovs-ofctl --bundle replace-flows, %d plain flows\t %s\t 240-380 ms measured before\t\n", r.PlainFlows, ms(r.PlainReplace))
	for i, d := range r.APIToEnforce {
		fmt.Fprintf(tw, "| API POST acr -> first real packet through (%s)\t %s\t -\t\n", r.APIToEnforceLabels[i], ms(d))
	}
	tw.Flush()
	if o.ApplyOnly {
		return
	}
	fmt.Fprintf(w, "\nThe paper's Tables 3/4 re-run (CPU of ovs-vswitchd, all its threads, as %% of one core; memory: its RSS as %% of the host's; the paper gives host load means; EMC hits, upcalls and subtable lookups from dpif-netdev/pmd-stats-show):\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| case\t ACRs\t scenario\t rate asked\t rate got\t ovs CPU % (min-max)\t CPU per packet\t ovs mem %\t RTT avg (mdev)\t EMC hits\t upcalls\t subtables/megaflow hit\t paper CPU %\t paper mem %\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, c := range r.Forwarding {
		fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %.0f Mbit/s\t %.1f (%.1f-%.1f)\t %.0f ns\t %.3f\t %.3f ms (%.3f)\t %.1f %%\t %.0f\t %.2f\t %s\t %s\t\n",
			c.ID, c.ACRs, c.Scenario, rate(c.RateMbps), c.GotMbps, c.OVSCPU, c.OVSCPUMin, c.OVSCPUMax, c.NsPerPkt, c.MemPct, c.RTTAvgMs, c.RTTMdevMs,
			c.EMCHitPct, c.Upcalls, c.SubtableLookups, orDash("%.3f", c.PaperCPU), orDash("%.3f", c.PaperMem))
	}
	tw.Flush()
	if len(r.Overheads) > 0 {
		fmt.Fprintf(w, "\nOverhead of the extra ACRs: mean of the per-round paired differences, ± the half-width of its 95 %% confidence interval (Student's t). CPU per packet divides ovs-vswitchd's CPU time by the packets its datapath received, so a round that happened to forward less does not count as cheaper. Goal: <= 1 %%.\n\n")
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| cases\t rounds\t ovs CPU\t ovs CPU per packet\t 95 % upper bound (per packet)\t RTT avg\t paper CPU\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t")
		for _, ov := range r.Overheads {
			fmt.Fprintf(tw, "| %s\t %d\t %+.1f %% ± %.1f\t %+.1f %% ± %.1f\t %+.1f %%\t %+.1f %% ± %.1f\t %s\t\n", ov.Pair, ov.Rounds,
				ov.CPUMean, ov.CPUHalf, ov.PktMean, ov.PktHalf, ov.PktMean+ov.PktHalf, ov.RTTMean, ov.RTTHalf, orDash("%+.1f %%", ov.PaperCPU))
		}
		tw.Flush()
	}
	if r.InstrErr != "" {
		fmt.Fprintf(w, "\nThe instruction count under callgrind did not run: %s\n", r.InstrErr)
	}
	if len(r.Instr) > 0 {
		fmt.Fprintf(w, "\nThe same pairs counted: a private ovs-vswitchd under valgrind --tool=callgrind --cache-sim=yes (this machine has no hardware counters), %d flood pings per case and round (one packet in flight at a time), pairs back to back in random order; events of all its threads from zeroing to dumping the counters, per packet forwarded (requests and replies). Estimated cycles are callgrind's estimate Ir + 10 L1 misses + 100 last-level misses: the switch's work per packet, which is its share of the packet's latency, with the cache misses a larger flow table could cause. These counts do not depend on the machine's timing, which makes CPU time and RTT scatter. Overhead: mean of the paired differences ± 95 %% interval. Goal: <= 1 %%.\n\n", r.InstrPings)
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| case\t ACRs\t scenario\t instructions per packet (median)\t main thread\t estimated cycles per packet\t last-level misses per packet\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t")
		for _, c := range r.Instr {
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %.0f\t %.0f\t %.0f\t %.1f\t\n", c.ID, c.ACRs, c.Scenario, c.PerPkt, c.MainPkt, c.CycPkt, c.LLPkt)
		}
		tw.Flush()
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| cases\t rounds\t instructions per packet\t 95 % upper bound\t estimated cycles per packet (latency)\t 95 % upper bound\t paper CPU\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t")
		for _, ov := range r.InstrOverheads {
			fmt.Fprintf(tw, "| %s\t %d\t %+.2f %% ± %.2f\t %+.2f %%\t %+.2f %% ± %.2f\t %+.2f %%\t %s\t\n", ov.Pair, ov.Rounds,
				ov.Mean, ov.Half, ov.Mean+ov.Half, ov.CycMean, ov.CycHalf, ov.CycMean+ov.CycHalf, orDash("%+.1f %%", ov.PaperCPU))
		}
		tw.Flush()
	}
}
