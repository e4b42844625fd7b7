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

// InstrCase is one case of the paper's Tables 3/4 counted under callgrind:
// what ovs-vswitchd executes per forwarded packet, all threads, medians
// over the rounds.
type InstrCase struct {
	ID       int
	ACRs     string
	Scenario string
	PerPkt   float64 // instructions, all threads
	MainPkt  float64 // instructions, the main thread (it polls the VMs' ports)
	CycPkt   float64 // estimated cycles, all threads (cgCounts.cycles)
	LLPkt    float64 // last-level cache misses, all threads
}

// InstrOverhead is the extra ACRs' cost per packet in instructions and in
// estimated cycles: the mean of the rounds' paired relative differences
// with its 95 % confidence interval.
type InstrOverhead struct {
	Pair           string
	Rounds         int
	Mean, Half     float64 // %, instructions, all threads
	CycMean        float64 // %, estimated cycles, all threads
	CycHalf        float64
	PaperCPU       float64 // the paper's relative CPU difference, %
	Diffs, CycDiff []float64
}

// cgCounts are the events of callgrind's cache simulation that the cycle
// estimate needs.
type cgCounts struct {
	Ir  float64 // instructions executed
	L1m float64 // first-level misses: instruction fetch, data read, data write
	LLm float64 // last-level misses, the same three
}

// cycles is callgrind's (KCachegrind's) cycle estimate without branch
// simulation: Ir + 10 L1m + 100 LLm. With one ping in flight at a time the
// switch's share of a packet's latency is the work it does for it, so this
// is the latency the extra ACRs could add, measured without the
// scheduler's noise; unlike instructions it also charges a larger flow
// table's cache misses.
func (c cgCounts) cycles() float64 { return c.Ir + 10*c.L1m + 100*c.LLm }

func (c cgCounts) add(d cgCounts) cgCounts {
	return cgCounts{c.Ir + d.Ir, c.L1m + d.L1m, c.LLm + d.LLm}
}

func (c cgCounts) sub(d cgCounts) cgCounts {
	return cgCounts{c.Ir - d.Ir, c.L1m - d.L1m, c.LLm - d.LLm}
}

func (c cgCounts) per(n float64) cgCounts { return cgCounts{c.Ir / n, c.L1m / n, c.LLm / n} }

// instrBridge is the bridge of the private, instrumented switch; its
// name differs from benchBridge because a netdev bridge's internal port
// is a host network device.
const instrBridge = "secaas-bcg"

// instructions re-runs the forwarding pairs on a private ovs-vswitchd under
// valgrind --tool=callgrind --cache-sim=yes and counts, per packet of a
// flood ping, the instructions it executes and its estimated cycles. This
// machine has no hardware performance counters; the counts do not depend
// on the machine's timing, so they show a difference of a per cent where
// CPU time and RTT (±7-16 % over 12 paired 5 s rounds) cannot.
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
	in, err := ovs.StartPrivate(ctx, dir, []string{"valgrind", "--tool=callgrind", "--separate-threads=yes", "--cache-sim=yes", "--callgrind-out-file=" + out})
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
	cases := make([]InstrCase, len(paperCases))
	for i, bc := range paperCases {
		cases[i] = InstrCase{ID: bc.ID, ACRs: bc.ACRs, Scenario: bc.Scenario}
	}
	var per, main, cyc, ll = make([][]float64, len(cases)), make([][]float64, len(cases)), make([][]float64, len(cases)), make([][]float64, len(cases))
	err = pairedRounds(o.InstrRounds, 35, len(cases), func(round, i int) error {
		c, bc := cases[i], paperCases[i]
		o.say("instructions round %d/%d, case %d: %s ACRs, %s, %d flood pings", round, o.InstrRounds, c.ID, c.ACRs, c.Scenario, o.InstrPings)
		if err := a.Apply(ctx, []tenant.Domain{twoVMs(bc.Extra)}, nil); err != nil {
			return err
		}
		n, m, err := countInstructions(ctx, in.PID(), out, func() (int, error) {
			return floodPing(ctx, l, bc.target(), o.InstrPings)
		})
		if err != nil {
			return fmt.Errorf("case %d: %w", c.ID, err)
		}
		o.say("  per packet: %.0f instructions (%.0f in the main thread), %.0f estimated cycles, %.1f last-level misses", n.Ir, m.Ir, n.cycles(), n.LLm)
		per[i], main[i] = append(per[i], n.Ir), append(main[i], m.Ir)
		cyc[i], ll[i] = append(cyc[i], n.cycles()), append(ll[i], n.LLm)
		return nil
	})
	if err != nil {
		return err
	}
	for i := range cases {
		cases[i].PerPkt, cases[i].MainPkt = median(per[i]), median(main[i])
		cases[i].CycPkt, cases[i].LLPkt = median(cyc[i]), median(ll[i])
	}
	res.Instr = cases
	for pair := 0; pair < len(cases); pair += 2 {
		a, b := paperCases[pair], paperCases[pair+1]
		ov := InstrOverhead{Pair: fmt.Sprintf("%d vs %d", b.ID, a.ID), Rounds: len(per[pair]),
			PaperCPU: (b.PaperCPU - a.PaperCPU) / a.PaperCPU * 100}
		for r := range per[pair] {
			ov.Diffs = append(ov.Diffs, (per[pair+1][r]-per[pair][r])/per[pair][r]*100)
			ov.CycDiff = append(ov.CycDiff, (cyc[pair+1][r]-cyc[pair][r])/cyc[pair][r]*100)
		}
		ov.Mean, ov.Half = meanCI(ov.Diffs)
		ov.CycMean, ov.CycHalf = meanCI(ov.CycDiff)
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
// dumps the counters and returns the events of all threads, and of the
// main thread alone, divided by the packets load reports. The dump
// has one file per thread (--separate-threads=yes): OUT.N-TT, thread 01
// the main one.
func countInstructions(ctx context.Context, pid int, out string, load func() (int, error)) (all, main cgCounts, err error) {
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
		return all, main, err
	}
	packets, err := load()
	if err != nil {
		return all, main, err
	}
	if err := ctl("-d"); err != nil {
		return all, main, err
	}
	dumps, _ := filepath.Glob(out + ".*")
	if len(dumps) == 0 {
		return all, main, fmt.Errorf("callgrind wrote no dump (%s.*)", out)
	}
	var total, first cgCounts
	for _, f := range dumps {
		b, err := os.ReadFile(f)
		if err != nil {
			return all, main, err
		}
		n, err := callgrindSummary(string(b))
		if err != nil {
			return all, main, fmt.Errorf("%s: %w", f, err)
		}
		total = total.add(n)
		if strings.HasSuffix(f, "-01") {
			first = n
		}
	}
	if packets <= 0 {
		return all, main, fmt.Errorf("no packets forwarded")
	}
	return total.per(float64(packets)), first.per(float64(packets)), nil
}

// callgrindSummary reads the "events:" and "summary:" lines of a callgrind
// dump written with --cache-sim=yes (a thread that did little has its
// trailing zero counts left out).
func callgrindSummary(s string) (cgCounts, error) {
	var names, vals []string
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(l, "events:"); ok {
			names = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(l, "summary:"); ok {
			vals = strings.Fields(v)
		}
	}
	if len(vals) == 0 {
		return cgCounts{}, fmt.Errorf("no summary line")
	}
	if len(vals) > len(names) {
		return cgCounts{}, fmt.Errorf("%d events but %d summary values", len(names), len(vals))
	}
	ev := map[string]float64{}
	for i, n := range names {
		if i >= len(vals) {
			ev[n] = 0 // callgrind leaves out trailing zeros
			continue
		}
		f, err := strconv.ParseFloat(vals[i], 64)
		if err != nil {
			return cgCounts{}, fmt.Errorf("summary %s: %w", n, err)
		}
		ev[n] = f
	}
	return countsOf(ev)
}

// countsOf sums callgrind's events (by name) into cgCounts.
func countsOf(ev map[string]float64) (cgCounts, error) {
	for _, n := range []string{"Ir", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"} {
		if _, ok := ev[n]; !ok {
			return cgCounts{}, fmt.Errorf("no %s event (callgrind without --cache-sim=yes?)", n)
		}
	}
	return cgCounts{Ir: ev["Ir"], L1m: ev["I1mr"] + ev["D1mr"] + ev["D1mw"], LLm: ev["ILmr"] + ev["DLmr"] + ev["DLmw"]}, nil
}
