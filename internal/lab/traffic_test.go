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
		ev := nad.Evaluate(name, results, &res.Labels, 0)
		detected, brute := 0, false
		for _, e := range ev.Episodes {
			if e.Kind == nad.BruteForce {
				brute = e.Detected
			} else if e.Detected {
				detected++
			}
		}
		t.Logf("%s: %d/4 floods and scans detected, brute force detected %v, %d false alarms in %d benign windows, AUC %.3f", name, detected, brute, ev.FalseAlarms, ev.BenignWindows, ev.AUC)
		// The paper's detector, as printed, misses some of them amid the
		// varied benign traffic (docs/nad-lstm.md); ours must not.
		want := 4
		if name == "stability" {
			want = 2
		}
		if detected < want || ev.FPR > 10 {
			t.Errorf("%s: %d/4 attacks detected (%+v), FPR %.1f %%", name, detected, ev.Grid, ev.FPR)
		}
	}
}
