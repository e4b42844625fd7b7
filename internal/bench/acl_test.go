package bench

import (
	"context"
	"errors"
	"math"
	"os"
	"testing"
)

func TestPMDStats(t *testing.T) {
	out := `Main thread:
  packets received: 4000
  emc hits: 3891
  megaflow hits: 109
  avg. subtable lookups per megaflow hit: 2.93
  miss with success upcall: 3
pmd thread numa_id 0 core_id 1:
  packets received: 1000
  emc hits: 1000
`
	s := pmdStats(out)
	if s["packets received"] != 5000 || s["emc hits"] != 4891 || s["avg. subtable lookups per megaflow hit"] != 2.93 || s["miss with success upcall"] != 3 {
		t.Fatalf("got %v", s)
	}
}

func TestMedianCase(t *testing.T) {
	c := medianCase([]ForwardCase{{ID: 2, OVSCPU: 30}, {ID: 2, OVSCPU: 10}, {ID: 2, OVSCPU: 20}})
	if c.ID != 2 || c.OVSCPU != 20 || c.OVSCPUMin != 10 || c.OVSCPUMax != 30 {
		t.Fatalf("got %+v", c)
	}
}

func TestMeanCI(t *testing.T) {
	// Hand-computed: mean 2, n 4, half-width t(3) * sd / 2.
	m, h := meanCI([]float64{1, 2, 2, 3}) // sd = sqrt(2/3)
	if math.Abs(m-2) > 1e-9 || math.Abs(h-3.182*math.Sqrt(2.0/3)/2) > 1e-9 {
		t.Fatalf("meanCI = %v ± %v", m, h)
	}
	if _, h := meanCI([]float64{5}); !math.IsNaN(h) {
		t.Fatalf("one value has no interval, got %v", h)
	}
	if t975(1000) < 1.96 || t975(1000) > 1.97 || t975(40) <= t975(60) {
		t.Fatal("t quantiles out of order")
	}
}

func TestPairedOverhead(t *testing.T) {
	as := []ForwardCase{{ID: 1, OVSCPU: 20, NsPerPkt: 1000, RTTAvgMs: 0.2, PaperCPU: 1}, {OVSCPU: 30, NsPerPkt: 2000, RTTAvgMs: 0.4}}
	bs := []ForwardCase{{ID: 2, OVSCPU: 21, NsPerPkt: 1010, RTTAvgMs: 0.21, PaperCPU: 1.01}, {OVSCPU: 31.5, NsPerPkt: 2020, RTTAvgMs: 0.38}}
	ov := pairedOverhead(as, bs, as[0], bs[0])
	if ov.Pair != "2 vs 1" || math.Abs(ov.CPUMean-5) > 1e-9 || math.Abs(ov.PktMean-1) > 1e-9 || ov.PktHalf != 0 || math.Abs(ov.PaperCPU-1) > 1e-9 ||
		math.Abs(ov.RTTMean-0) > 1e-9 || math.Abs(ov.RTTHalf-12.706*math.Sqrt(50)/math.Sqrt(2)) > 1e-6 {
		t.Fatalf("%+v", ov)
	}
	// A pair the paper did not run has no paper figure.
	ov = pairedOverhead(as, bs, ForwardCase{ID: 5}, ForwardCase{ID: 6})
	if !math.IsNaN(ov.PaperCPU) || orDash("%+.1f %%", ov.PaperCPU) != "-" || orDash("%.3f", 0.685) != "0.685" || rate(0) != "unpaced" {
		t.Fatalf("paper figure of an extra pair: %v", ov.PaperCPU)
	}
}

func TestPingPackets(t *testing.T) {
	n, err := pingPackets("--- 10.30.0.11 ping statistics ---\n5000 packets transmitted, 4998 received, 0.04% packet loss, time 5165ms\n")
	if err != nil || n != 9998 {
		t.Fatalf("got %d, %v", n, err)
	}
	for _, bad := range []string{"", "garbage", "5000 packets transmitted, 0 received, 100% packet loss"} {
		if _, err := pingPackets(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCallgrindSummary(t *testing.T) {
	dump := "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npositions: line\nevents: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\npart: 3\nthread: 1\nsummary: 1000 400 200 3 5 7 1 2 4\n\nfn=(1) main\n0 12\ntotals: 1000 400 200 3 5 7 1 2 4\n"
	c, err := callgrindSummary(dump)
	if err != nil || c != (cgCounts{Ir: 1000, L1m: 15, LLm: 7}) {
		t.Fatalf("got %+v, %v", c, err)
	}
	if got := c.cycles(); got != 1000+150+700 {
		t.Errorf("cycles %v", got)
	}
	short := "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nsummary: 4531 1241 839 403 114 44\n"
	if c, err := callgrindSummary(short); err != nil || c != (cgCounts{Ir: 4531, L1m: 561}) {
		t.Errorf("trailing zeros left out: got %+v, %v", c, err)
	}
	for _, bad := range []string{"", "totals: 5\n", "summary:\n", "events: Ir\nsummary: x\n", "events: Ir\nsummary: 1 2\n",
		"events: Ir\nsummary: 5\n", // no cache simulation
		"events: Ir Dr\nsummary: 5\n"} {
		if _, err := callgrindSummary(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCountInstructions(t *testing.T) {
	// A fake callgrind_control that writes a dump per thread on -d.
	dir := t.TempDir()
	out := dir + "/cg.out"
	bin := dir + "/bin"
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ev := "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\\n"
	script := "#!/bin/sh\ncase \"$1\" in -d) printf '" + ev + "summary: 3000 0 0 10 0 0 1 0 0\\n' > " + out + ".2-01; printf '" + ev + "summary: 1000 0 0 0 20 0 0 2 0\\n' > " + out + ".2-02;; esac\n"
	if err := os.WriteFile(bin+"/callgrind_control", []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	os.WriteFile(out+".1-01", []byte("summary: 99999\n"), 0o644) // a stale dump: not counted
	all, main, err := countInstructions(context.Background(), 1, out, func() (int, error) { return 10, nil })
	if err != nil || all != (cgCounts{400, 3, 0.3}) || main != (cgCounts{300, 1, 0.1}) {
		t.Fatalf("got %+v, %+v, %v", all, main, err)
	}
	if _, _, err := countInstructions(context.Background(), 1, out, func() (int, error) { return 0, nil }); err == nil {
		t.Error("no packets: no error")
	}
}

func TestPairedRounds(t *testing.T) {
	var calls [][2]int
	if err := pairedRounds(50, 1, 4, func(round, i int) error { calls = append(calls, [2]int{round, i}); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 200 {
		t.Fatalf("%d calls", len(calls))
	}
	first := map[int]int{}
	for k := 0; k < len(calls); k += 2 {
		a, b := calls[k], calls[k+1]
		if a[0] != b[0] || a[1]/2 != b[1]/2 || a[1] == b[1] || a[0] != k/4+1 {
			t.Fatalf("calls %d, %d: %v %v are not the two members of one pair in one round", k, k+1, a, b)
		}
		first[a[1]]++
	}
	for i := 0; i < 4; i++ {
		if first[i] < 10 { // each member should lead sometimes (50 draws per pair)
			t.Fatalf("case %d led only %d times", i, first[i])
		}
	}
	stop := errors.New("stop")
	if err := pairedRounds(3, 1, 2, func(round, i int) error { return stop }); err != stop {
		t.Fatalf("error not passed on: %v", err)
	}
}
