package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/lstm"
	"secaas/internal/nad"
)

// detectorList expands a --detector value: names separated by commas, or
// all (every registered detector that can run with what was given).
func detectorList(v string, models map[lstm.Kind]*lstm.Model, canFit bool) ([]string, []string, error) {
	var names, skipped []string
	if v == "all" {
		for _, n := range detect.Names() {
			use, _ := detect.Uses(n)
			if (use == detect.NeedsModel && models[detect.ModelKind(n)] == nil) || (use == detect.FitsModel && !canFit && models[detect.ModelKind(n)] == nil) {
				skipped = append(skipped, n)
				continue
			}
			names = append(names, n)
		}
		return names, skipped, nil
	}
	for _, n := range splitList(v) {
		if _, ok := detect.Uses(n); !ok {
			return nil, nil, fmt.Errorf("--detector: %q is unknown (have %s, or all)", n, strings.Join(detect.Names(), ", "))
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("--detector names no detector")
	}
	return names, nil, nil
}

// loadModels reads --model files, keyed by their kind.
func loadModels(list string) (map[lstm.Kind]*lstm.Model, error) {
	out := map[lstm.Kind]*lstm.Model{}
	for _, f := range splitList(list) {
		m, err := lstm.LoadFile(f)
		if err != nil {
			return nil, err
		}
		if out[m.Kind] != nil {
			return nil, fmt.Errorf("--model: two %s models", m.Kind)
		}
		out[m.Kind] = m
	}
	return out, nil
}

// epochPrinter shows training progress: a bar, the losses, the held-out
// AUC, the time spent and left.
func epochPrinter(w io.Writer, what string) func(lstm.Epoch) {
	return func(e lstm.Epoch) {
		const width = 20
		done := e.N * width / max(1, e.Of)
		bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
		auc := ""
		if e.ValAUC == e.ValAUC { // not NaN
			auc = fmt.Sprintf(" val AUC %.3f", e.ValAUC)
		}
		best := ""
		if e.Best {
			best = " *"
		}
		fmt.Fprintf(w, "%s epoch %2d/%d [%s] loss %.4f val %.4f%s%s  %s elapsed, about %s left\n", what, e.N, e.Of, bar, e.Loss, e.ValLoss, auc, best,
			e.Elapsed.Round(time.Second), e.Remains.Round(time.Second))
	}
}

// labelledServer is the server of a labelled capture: --server, the
// labels' own, or the capture's most frequent destination.
func labelledServer(flagValue, pcap string, labels *nad.Labels) (netip.Addr, error) {
	o := nadOpts{pcap: pcap, servers: flagValue}
	if flagValue == "" && labels != nil && labels.Server != "" {
		o.servers = labels.Server
	}
	list, err := o.serverList()
	if err != nil {
		return netip.Addr{}, err
	}
	if len(list) != 1 {
		return netip.Addr{}, fmt.Errorf("--server: name one server")
	}
	return list[0], nil
}

// parseUntil reads --train-until / --train-first: a duration from the
// first window's start, or an RFC 3339 time.
func parseUntil(v string, first time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return first.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration from the capture's start (15m) nor an RFC 3339 time", v)
	}
	return t, nil
}

func nadEval(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("nad eval", env)
	pcap := fs.String("pcap", "", "capture file")
	labelsFile := fs.String("labels", "", "labels: the JSON secaas lab traffic writes, or a CSV whose header starts start_unix,end_unix,kind")
	server := fs.String("server", "", "the monitored server (default: the labels' server, else the most frequent destination)")
	window := fs.Duration("window", time.Second, "window length")
	history := fs.Int("history", 120, "windows in the normal profile (N) of the stability detectors")
	k := fs.Float64("k", detect.DefaultK, "normalized detector: threshold = mean + K sd of the history's deviations")
	which := fs.String("detector", "stability,normalized", "detectors, comma separated ("+strings.Join(detect.Names(), ", ")+"), or all")
	models := fs.String("model", "", "trained model files (secaas nad train), comma separated: the lstm detectors use the one of their kind")
	trainFirst := fs.String("train-first", "", "detectors that learn from benign traffic fit on this first part of the capture (a duration, or an RFC 3339 time) and are judged only after it")
	epochs := fs.Int("epochs", 50, "lstm-unsup without --model: training epochs on the --train-first part")
	seed := fs.Uint64("seed", 1, "lstm-unsup without --model: training seed")
	fmargin := fs.Float64("forecast-margin", lstm.DefaultMargin, "lstm-unsup without --model: threshold = this times the largest forecast error on held-out training windows")
	seq := fs.Int("seq", detect.DefaultSeq, "lstm-unsup without --model: sequence length T")
	out := addOutput(fs)
	margin := fs.Duration("margin", 0, "leave windows starting within this long after an attack out of the benign set (its aftermath)")
	plots := fs.String("plots", "", "write roc.png (every detector) and features.png (the 8 features over time, attacks shaded) to this directory")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *pcap == "" || *labelsFile == "" {
		return fmt.Errorf("--pcap and --labels are required")
	}
	labels, err := nad.ReadLabels(*labelsFile)
	if err != nil {
		return err
	}
	srv, err := labelledServer(*server, *pcap, labels)
	if err != nil {
		return err
	}
	ms, err := loadModels(*models)
	if err != nil {
		return err
	}
	names, skipped, err := detectorList(*which, ms, *trainFirst != "")
	if err != nil {
		return err
	}
	for _, n := range skipped {
		fmt.Fprintf(env.Stderr, "detector %s left out of all: it needs a model (--model) or --train-first\n", n)
	}
	ws, st, err := nad.Windows(*pcap, srv, feature.Config{Window: *window})
	if err != nil {
		return err
	}
	if len(ws) == 0 {
		return fmt.Errorf("%s: no whole %s window of server %s (%d packets, %d decoded)", *pcap, *window, srv, st.Packets, st.Decoded)
	}
	until, err := parseUntil(*trainFirst, time.Unix(0, ws[0].Start))
	if err != nil {
		return fmt.Errorf("--train-first: %w", err)
	}
	for _, n := range names {
		if use, _ := detect.Uses(n); use != detect.NoModel && ms[detect.ModelKind(n)] == nil && until.IsZero() {
			return fmt.Errorf("detector %s needs --model, or --train-first to fit on", n)
		}
	}
	p := detect.Params{History: *history, K: *k, Window: *window, Models: slices.Collect(maps.Values(ms)),
		Train: lstm.TrainConfig{Epochs: *epochs, Seed: *seed, Margin: *fmargin, Arch: lstm.Arch{Seq: *seq}}, Progress: epochPrinter(env.Stderr, "lstm-unsup")}
	results, err := nad.Judge(ws, names, p, until)
	if err != nil {
		return err
	}
	var evs []nad.Evaluation
	for _, n := range names {
		evs = append(evs, nad.Evaluate(n, results, labels, *margin))
	}
	if *plots != "" {
		if err := evalPlots(*plots, results, labels, evs); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "plots: %s\n", filepath.Join(*plots, "{roc,features}.png"))
	}
	if *out == FormatJSON || *out == FormatYAML {
		return render(env, *out, evs, nil)
	}
	if !until.IsZero() {
		fmt.Fprintf(env.Stdout, "Trained on %s of %d windows; judged after %s.\n\n", until.Sub(time.Unix(0, ws[0].Start)).Round(time.Second), len(ws), until.UTC().Format(time.RFC3339))
	}
	for _, ev := range evs {
		if slices.ContainsFunc(ev.Grid, func(c nad.Cell) bool { _, ok := nad.PaperRates[c.Type]; return ok }) {
			nad.WriteEvaluation(env.Stdout, ev)
		} else {
			fmt.Fprintf(env.Stdout, "Detector %s: windows judged %d, benign %d, alarmed %d (%.1f false alarms per hour); ROC AUC %.3f\n",
				ev.Detector, ev.WindowsJudged, ev.BenignWindows, ev.FalseAlarms, ev.FalseAlarmsPerHour, ev.AUC)
		}
		writeEpisodes(env.Stdout, ev)
		fmt.Fprintln(env.Stdout)
	}
	return nil
}

// writeEpisodes prints, per kind of episode, how many were found.
func writeEpisodes(w io.Writer, ev nad.Evaluation) {
	type agg struct{ n, judged, found int }
	kinds := map[string]*agg{}
	var order []string
	for _, e := range ev.Episodes {
		a := kinds[e.Kind]
		if a == nil {
			a = &agg{}
			kinds[e.Kind] = a
			order = append(order, e.Kind)
		}
		a.n++
		if e.Judged {
			a.judged++
		}
		if e.Detected {
			a.found++
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| episode kind\t episodes\t judged\t detected\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t")
	for _, k := range order {
		a := kinds[k]
		fmt.Fprintf(tw, "| %s\t %d\t %d\t %d\t\n", k, a.n, a.judged, a.found)
	}
	tw.Flush()
}

func nadTrain(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("nad train", env)
	pcap := fs.String("pcap", "", "capture file")
	featuresCSV := fs.String("features", "", "instead of --pcap: a CSV from secaas nad features --set all -o csv (columns start, the 11 LSTM features and, for a forecaster, the extra ones)")
	labelsFile := fs.String("labels", "", "labels (JSON of secaas lab traffic, or CSV start_unix,end_unix,kind)")
	server := fs.String("server", "", "the monitored server (default: the labels' server, else the most frequent destination)")
	window := fs.Duration("window", time.Second, "window length")
	until := fs.String("train-until", "", "train on the windows before this (a duration from the capture's start, or an RFC 3339 time; default all)")
	kind := fs.String("kind", "classifier", "classifier (LSTM-NAD, needs labelled attacks) or forecaster (benign windows only, for lstm-unsup)")
	var cfg lstm.TrainConfig
	fs.IntVar(&cfg.Arch.Seq, "seq", detect.DefaultSeq, "sequence length T in windows")
	fs.IntVar(&cfg.Epochs, "epochs", 50, "epochs (the paper: 50)")
	fs.IntVar(&cfg.Batch, "batch", 64, "batch size")
	fs.Float64Var(&cfg.LR, "lr", 1e-3, "Adam's learning rate")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed (a seed gives the same model on any machine)")
	fs.Float64Var(&cfg.Val, "val", 0.2, "fraction held out at the end to choose the best epoch")
	fs.Float64Var(&cfg.Margin, "forecast-margin", lstm.DefaultMargin, "forecaster: the threshold is this times the largest forecast error on the held-out windows")
	outFile := fs.String("out", "", "model file to write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if (*pcap == "") == (*featuresCSV == "") || *outFile == "" {
		return fmt.Errorf("one of --pcap or --features, and --out, are required")
	}
	cfg.Kind = lstm.Kind(*kind)
	if cfg.Kind != lstm.Classifier && cfg.Kind != lstm.Forecaster {
		return fmt.Errorf("--kind must be classifier or forecaster")
	}
	var labels *nad.Labels
	if *labelsFile != "" {
		var err error
		if labels, err = nad.ReadLabels(*labelsFile); err != nil {
			return err
		}
	} else if cfg.Kind == lstm.Classifier {
		return fmt.Errorf("a classifier needs --labels")
	}
	var ws []feature.Window
	var err error
	if *pcap != "" {
		srv, err := labelledServer(*server, *pcap, labels)
		if err != nil {
			return err
		}
		if ws, _, err = nad.Windows(*pcap, srv, feature.Config{Window: *window}); err != nil {
			return err
		}
	} else if ws, err = readFeatureCSV(*featuresCSV, *window, cfg.Kind == lstm.Forecaster); err != nil {
		return err
	}
	if len(ws) == 0 {
		return fmt.Errorf("no whole %s window to train on", *window)
	}
	end, err := parseUntil(*until, time.Unix(0, ws[0].Start))
	if err != nil {
		return fmt.Errorf("--train-until: %w", err)
	}
	if !end.IsZero() {
		n := 0
		for n < len(ws) && time.Unix(0, ws[n].Start).Before(end) {
			n++
		}
		ws = ws[:n]
	}
	anom := nad.WindowLabels(ws, labels)
	if cfg.Kind == lstm.Forecaster {
		for i, a := range anom {
			if a {
				return fmt.Errorf("a forecaster trains on benign windows only: the window at %s overlaps a labelled attack (set --train-until before it)",
					time.Unix(0, ws[i].Start).UTC().Format(time.RFC3339))
			}
		}
	}
	x := detect.ModelInputs(cfg.Kind, ws)
	cfg.Arch.Features = len(detect.ModelFeatures(cfg.Kind))
	cfg.Progress = epochPrinter(env.Stderr, "train")
	pos := 0
	for _, a := range anom {
		if a {
			pos++
		}
	}
	fmt.Fprintf(env.Stderr, "training a %s on %d windows of %s (%d anomalous), sequences of %d, %d epochs\n", cfg.Kind, len(ws), *window, pos, cfg.Arch.Seq, cfg.Epochs)
	m, err := lstm.Train(ctx, cfg, x, anom)
	if err != nil {
		return err
	}
	m.Features, m.Window = detect.ModelFeatures(cfg.Kind), *window
	if err := m.SaveFile(*outFile); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "model: %s (%s, epoch %d kept, validation loss %.4f, threshold %.4g)\n", *outFile, m.Kind, m.Epoch, m.ValLoss, m.Threshold)
	return nil
}

// readFeatureCSV reads windows from the CSV of nad features: a start
// column (RFC 3339) and the 11 LSTM features by name, and with extra the
// extra features too.
func readFeatureCSV(path string, window time.Duration, extra bool) ([]feature.Window, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range head {
		col[strings.TrimSpace(h)] = i
	}
	need := append([]string{"start"}, feature.LSTMNames[:]...)
	if extra {
		need = append(need, feature.ExtraNames[:]...)
	}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return nil, fmt.Errorf("%s: no %q column (write it with secaas nad features --set all -o csv)", path, n)
		}
	}
	var ws []feature.Window
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return ws, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		t, err := time.Parse(time.RFC3339Nano, rec[col["start"]])
		if err != nil {
			return nil, fmt.Errorf("%s line %d: start %q: %w", path, line, rec[col["start"]], err)
		}
		w := feature.Window{Start: t.UnixNano(), Duration: window}
		for j, n := range feature.LSTMNames {
			if w.LSTM[j], err = strconv.ParseFloat(rec[col[n]], 64); err != nil {
				return nil, fmt.Errorf("%s line %d: %s: %w", path, line, n, err)
			}
		}
		for j, n := range feature.ExtraNames {
			if !extra {
				break
			}
			if w.Extra[j], err = strconv.ParseFloat(rec[col[n]], 64); err != nil {
				return nil, fmt.Errorf("%s line %d: %s: %w", path, line, n, err)
			}
		}
		ws = append(ws, w)
	}
}

func nadDetectors(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("nad detectors", env)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	use := map[detect.ModelUse]string{detect.NoModel: "no", detect.NeedsModel: "yes", detect.FitsModel: "a model, or --train-first"}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMODEL\tWHAT")
	for _, n := range detect.Names() {
		u, _ := detect.Uses(n)
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, use[u], detect.Summary(n))
	}
	return tw.Flush()
}
