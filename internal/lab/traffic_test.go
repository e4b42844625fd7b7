package lab_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/nad"
)

// TestTrafficLabDetection is the short lab run of issue 4: real benign
// sessions, real nmap/hping3 attacks and a replayed real capture through
// OVS, mirrored and captured with AF_PACKET, then judged offline by both
// detectors.
func TestTrafficLabDetection(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	// The varied benign profile (the default), with an SSH brute force too.
	scales := map[string][]int{nad.PortScan: {600}, nad.SYNFlood: {3000}, nad.UDPFlood: {1800}, nad.BruteForce: {20}}
	// Plus a real capture (masscan of ports 0-1000), readdressed and replayed.
	replay := nad.Attack{Type: nad.Replay + "masscan", File: filepath.Join(labtest.DataDir(t), "pcaps", "esnet-masscan-tcp-0-1000.pcap")}
	attacks, err := nad.PlanAttacks(rand.New(rand.NewPCG(7, 0)), scales, 1, 35*time.Second, 76*time.Second, 8*time.Second, replay)
	if err != nil {
		t.Fatal(err)
	}
	var progress io.Writer = io.Discard
	if testing.Verbose() {
		progress = os.Stderr
	}
	res, err := lab.RunTraffic(ctx, lab.TrafficConfig{Seed: 7, Duration: 84 * time.Second, Span: time.Second,
		Attacks: attacks, Out: t.TempDir(), Prefix: "tl", Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 0 || res.Packets < 5000 || res.Sessions < 500 || res.Failed > res.Sessions/20 {
		t.Fatalf("lab run: %d packets, %d dropped, %d sessions (%d failed)", res.Packets, res.Dropped, res.Sessions, res.Failed)
	}
	for _, a := range res.Labels.Attacks {
		if a.Err != "" || a.Start.IsZero() || !a.End.After(a.Start) {
			t.Fatalf("attack %+v did not run", a)
		}
	}
	r, c, err := nad.OpenFile(res.Capture)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var results []nad.Result
	dets := []string{"stability", "normalized"}
	if _, err := nad.Run(r, nad.Options{Servers: []netip.Addr{lab.ServerIP}, Features: feature.Config{Window: time.Second}, Detectors: dets, Params: detect.Params{History: 30}},
		func(x nad.Result) { results = append(results, x) }); err != nil {
		t.Fatal(err)
	}
	for _, name := range dets {
		// The 3 s after each attack are its aftermath (SYN-ACKs retried to
		// spoofed sources, late replies): neither attack nor benign.
		ev := nad.Evaluate(name, results, &res.Labels, 3*time.Second)
		detected, paper := 0, 0
		var missed []string
		for _, e := range ev.Episodes {
			switch {
			case e.Detected && e.Kind != nad.BruteForce:
				detected++
				if _, ok := nad.PaperRates[e.Kind]; ok {
					paper++
				}
			case !e.Detected:
				missed = append(missed, e.Kind)
			}
		}
		t.Logf("%s: %d/4 floods and scans detected (missed %v), %d false alarms in %d benign windows, AUC %.3f", name, detected, missed, ev.FalseAlarms, ev.BenignWindows, ev.AUC)
		// Ours must find the paper's three (a 600-port scan, 3,000-packet
		// SYN and 1,800-packet UDP floods) amid the varied traffic, with a
		// 30-window history; the replayed masscan and the brute force are
		// reported, and so are false alarm rates, which a run this short
		// (about 25 benign windows, a 30-window history) only bounds:
		// docs/nad-lstm.md measures both on long captures. The paper's
		// detector, as printed, misses some of the three here.
		want := 3
		if name == "stability" {
			want = 2
		}
		if paper < want || ev.FPR > 20 {
			t.Errorf("%s: %d of the paper's 3 attacks detected (%+v), FPR %.1f %%", name, paper, ev.Grid, ev.FPR)
		}
	}
}
