package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"secaas/internal/agent"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// InstrCase is one case of the paper's Tables 3/4 counted in instructions:
// what ovs-vswitchd executes per forwarded packet, all threads.
type InstrCase struct {
	ID       int
	ACRs     string
	Scenario string
	PerPkt   float64 // median over the rounds, all threads
	MainPkt  float64 // median over the rounds, the main thread (it polls the VMs' ports)
}

// InstrOverhead is the extra ACRs' cost in instructions per packet: the
// mean of the rounds' paired relative differences with its 95 %
// confidence interval.
type InstrOverhead struct {
	Pair       string
	Rounds     int
	Mean, Half float64 // %, all threads
	MainMean   float64 // %, main thread
	MainHalf   float64
	PaperCPU   float64 // the paper's relative CPU difference, %
	Diffs      []float64
	MainDiffs  []float64
}

// instrBridge is the bridge of the private, instrumented switch; its
// name differs from benchBridge because a netdev bridge's internal port
// is a host network device.
const instrBridge = "secaas-bcg"

// instructions re-runs the forwarding pairs on a private ovs-vswitchd under
// valgrind --tool=callgrind and counts the instructions it executes per
// packet of a flood ping. This machine has no hardware performance
// counters; instruction counts do not depend on the machine's timing, so
// they show a difference of a per cent where CPU time (about 9 % from one
// 5 s round to the next) cannot.
func instructions(ctx context.Context, o ACLOptions, res *ACLResult) (err error) {
	for _, tool := range []string{"valgrind", "callgrind_control"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make deps)", tool)
		}
	}
	if _, err := os.Stat("/sys/class/net/ovs-netdev"); err == nil {
		return fmt.Errorf("the host's Open vSwitch has userspace (netdev) bridges, whose datapath device ovs-netdev a second switch cannot share; run it where they are gone, or with --instr-rounds 0")
	}
	dir, err := os.MkdirTemp("", "secaas-callgrind-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (the private switch's logs are in %s)", err, dir)
			return
		}
		os.RemoveAll(dir)
	}()
	out := filepath.Join(dir, "cg.out")
	o.say("instructions: a private ovs-vswitchd under callgrind in %s", dir)
	in, err := ovs.StartPrivate(ctx, dir, []string{"valgrind", "--tool=callgrind", "--separate-threads=yes", "--callgrind-out-file=" + out})
	if err != nil {
		return err
	}
	defer in.Stop()
	br := in.Bridge(instrBridge)
	if err := br.Ensure(ctx); err != nil {
		return err
	}
	l, err := buildLab(ctx, br)
	if err != nil {
		return err
	}
	defer l.close(br)
	a := agent.New(br, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	cases := []InstrCase{
		{ID: 1, ACRs: "7", Scenario: "VA -> VB (same subnet)"},
		{ID: 2, ACRs: "7+650", Scenario: "VA -> VB (same subnet)"},
		{ID: 3, ACRs: "7", Scenario: "VA -> P1 (outside, via uplink)"},
		{ID: 4, ACRs: "7+100", Scenario: "VA -> P1 (outside, via uplink)"},
	}
	extras := map[int]int{1: 0, 2: 650, 3: 0, 4: 100}
	paper := map[int]float64{1: 0.685, 2: 0.695, 3: 0.675, 4: 0.680}
	per, main := make([][]float64, len(cases)), make([][]float64, len(cases))
	err = pairedRounds(o.InstrRounds, 35, len(cases), func(round, i int) error {
		c := cases[i]
		o.say("instructions round %d/%d, case %d: %s ACRs, %s, %d flood pings", round, o.InstrRounds, c.ID, c.ACRs, c.Scenario, o.InstrPings)
		if err := a.Apply(ctx, []tenant.Domain{twoVMs(extras[c.ID])}); err != nil {
			return err
		}
		target := netip.MustParseAddr("10.30.0.11")
		if c.ID == 3 || c.ID == 4 {
			target = netip.MustParseAddr("10.30.0.100")
		}
		n, m, err := countInstructions(ctx, in.PID(), out, func() (int, error) {
			return floodPing(ctx, l, target, o.InstrPings)
		})
		if err != nil {
			return fmt.Errorf("case %d: %w", c.ID, err)
		}
		o.say("  %.0f instructions per packet, %.0f of them in the main thread", n, m)
		per[i], main[i] = append(per[i], n), append(main[i], m)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range cases {
		cases[i].PerPkt, cases[i].MainPkt = median(per[i]), median(main[i])
	}
	res.Instr = cases
	for pair := 0; pair < len(cases); pair += 2 {
		a, b := cases[pair], cases[pair+1]
		ov := InstrOverhead{Pair: fmt.Sprintf("%d vs %d", b.ID, a.ID), Rounds: len(per[pair]),
			PaperCPU: (paper[b.ID] - paper[a.ID]) / paper[a.ID] * 100}
		for r := range per[pair] {
			ov.Diffs = append(ov.Diffs, (per[pair+1][r]-per[pair][r])/per[pair][r]*100)
			ov.MainDiffs = append(ov.MainDiffs, (main[pair+1][r]-main[pair][r])/main[pair][r]*100)
		}
		ov.Mean, ov.Half = meanCI(ov.Diffs)
		ov.MainMean, ov.MainHalf = meanCI(ov.MainDiffs)
		res.InstrOverheads = append(res.InstrOverheads, ov)
	}
	return nil
}

// floodPing warms the path (ARP, datapath flows), then sends count flood
// pings from VA and returns the packets the switch forwarded (requests
// sent plus replies received).
func floodPing(ctx context.Context, l *benchLab, target netip.Addr, count int) (int, error) {
	va := l.hosts["bva"]
	if !va.Ping(ctx, target, 3, time.Second) {
		return 0, fmt.Errorf("VA cannot reach %s", target)
	}
	time.Sleep(500 * time.Millisecond)
	b, err := va.Exec(ctx, "ping", "-4", "-n", "-q", "-f", "-c", strconv.Itoa(count), target.String())
	if err != nil {
		return 0, fmt.Errorf("flood ping: %w: %s", err, b)
	}
	return pingPackets(string(b))
}

var pingCountRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingPackets is requests plus replies from ping's summary line.
func pingPackets(s string) (int, error) {
	m := pingCountRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("no ping summary in %q", s)
	}
	tx, _ := strconv.Atoi(m[1])
	rx, _ := strconv.Atoi(m[2])
	if rx == 0 {
		return 0, fmt.Errorf("no ping answered: %q", s)
	}
	return tx + rx, nil
}

// countInstructions zeroes callgrind's counters in process pid, runs load,
// dumps the counters and returns the instructions of all threads, and of
// the main thread alone, divided by the packets load reports. The dump
// has one file per thread (--separate-threads=yes): OUT.N-TT, thread 01
// the main one.
func countInstructions(ctx context.Context, pid int, out string, load func() (int, error)) (all, main float64, err error) {
	ctl := func(arg string) error {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if b, err := exec.CommandContext(cctx, "callgrind_control", arg, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("callgrind_control %s: %v: %s", arg, err, b)
		}
		return nil
	}
	old, _ := filepath.Glob(out + ".*")
	for _, f := range old {
		os.Remove(f)
	}
	if err := ctl("-z"); err != nil {
		return 0, 0, err
	}
	packets, err := load()
	if err != nil {
		return 0, 0, err
	}
	if err := ctl("-d"); err != nil {
		return 0, 0, err
	}
	dumps, _ := filepath.Glob(out + ".*")
	if len(dumps) == 0 {
		return 0, 0, fmt.Errorf("callgrind wrote no dump (%s.*)", out)
	}
	var total, first float64
	for _, f := range dumps {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, 0, err
		}
		n, err := callgrindSummary(string(b))
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", f, err)
		}
		total += n
		if strings.HasSuffix(f, "-01") {
			first = n
		}
	}
	return total / float64(packets), first / float64(packets), nil
}

// callgrindSummary is the "summary:" event count of a callgrind dump
// (instructions, the only event collected).
func callgrindSummary(s string) (float64, error) {
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, "summary:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseFloat(f[0], 64)
		}
	}
	return 0, fmt.Errorf("no summary line")
}
