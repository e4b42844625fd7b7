package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"secaas/internal/chart"
	"secaas/internal/feature"
	"secaas/internal/lab"
	"secaas/internal/nad"
)

func labTraffic(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("lab traffic", env)
	var cfg lab.TrafficConfig
	seed := fs.Uint64("seed", 1, "random seed (schedule and load)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "length of the run")
	warm := fs.Duration("warmup", 2*time.Minute, "attack-free time at the start (the detector's history)")
	gap := fs.Duration("gap", 20*time.Second, "minimum time between attack starts")
	per := fs.Int("per-setting", 1, "attacks per (type, scale) setting (the paper: 30)")
	fs.Float64Var(&cfg.Rate, "rate", 25, "mean benign sessions per second")
	fs.DurationVar(&cfg.Period, "period", 20*time.Minute, "period of the benign load cycle (a compressed day)")
	fs.IntVar(&cfg.Clients, "clients", 0, "benign client IP addresses (default 300 varied, 32 paper)")
	fs.StringVar(&cfg.Benign, "benign", lab.BenignVaried, "benign profile: varied (hundreds of Zipf-popular clients, mixed TTLs, HTTP/DNS/SMTP/POP3/SSH, long and short sessions) or paper (the first lab's 32 clients)")
	small := fs.Int("small", -1, "small and slow attacks per setting (nmap -T2 100 ports, 20 pps SYN flood, SSH brute force; default: --per-setting with varied, 0 with paper)")
	fs.DurationVar(&cfg.Span, "span", 2*time.Second, "how long one flood lasts")
	fs.StringVar(&cfg.Out, "out", "lab-traffic", "output directory (capture.pcap, labels.json)")
	fs.StringVar(&cfg.Prefix, "prefix", "sl", "prefix of the lab's bridge, namespaces and interfaces")
	replays := fs.String("replay", "", "real attack captures to replay with tcpreplay (readdressed to the server), comma separated")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg.Seed, cfg.Progress = *seed, env.Stderr
	if *small < 0 {
		*small = *per
		if cfg.Benign == lab.BenignPaper {
			*small = 0
		}
	}
	var extra []nad.Attack
	for _, typ := range nad.Kinds {
		for _, sc := range nad.SmallScales[typ] {
			for i := 0; i < *small; i++ {
				extra = append(extra, nad.Attack{Type: typ, Scale: sc})
			}
		}
	}
	for _, f := range splitList(*replays) {
		for i := 0; i < *per; i++ {
			extra = append(extra, nad.Attack{Type: nad.Replay + filepath.Base(f), File: f})
		}
	}
	attacks, err := nad.PlanAttacks(rand.New(rand.NewPCG(*seed, 0)), nad.PaperScales, *per, *warm, cfg.Duration-*gap, *gap, extra...)
	if err != nil {
		return err
	}
	cfg.Attacks = attacks
	res, err := lab.RunTraffic(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "capture: %s (%d packets, %d dropped)\nlabels:  %s (%d attacks)\n", res.Capture, res.Packets, res.Dropped, res.LabelsFile, len(res.Labels.Attacks))
	return nil
}

func evalPlots(dir string, results []nad.Result, labels *nad.Labels, evs []nad.Evaluation) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	curves, auc := map[string][][2]float64{}, map[string]float64{}
	for _, ev := range evs {
		curves[ev.Detector], auc[ev.Detector] = ev.ROC, ev.AUC
	}
	if err := chart.ROC(filepath.Join(dir, "roc.png"), curves, auc); err != nil {
		return err
	}
	if len(results) == 0 {
		return nil
	}
	t0 := time.Unix(0, results[0].Window.Start)
	var ts []float64
	var vals [][]float64
	for _, r := range results {
		ts = append(ts, time.Unix(0, r.Window.Start).Sub(t0).Seconds())
		vals = append(vals, r.Window.Stability[:])
	}
	var shade [][2]float64
	for _, a := range labels.Attacks {
		shade = append(shade, [2]float64{a.Start.Sub(t0).Seconds(), a.End.Sub(t0).Seconds() + 1})
	}
	return chart.Series(filepath.Join(dir, "features.png"), feature.StabilityNames[:], ts, vals, shade)
}
