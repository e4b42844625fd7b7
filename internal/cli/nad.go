package cli

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/nad"
)

type nadOpts struct {
	pcap, servers, set string
	format             *string
	window             time.Duration
	history            int
	k                  float64
	synNoACK           bool
}

func nadFlags(name string, env *Env, withDetect bool) (*flag.FlagSet, *nadOpts) {
	o := &nadOpts{}
	fs := newFlags(name, env)
	fs.StringVar(&o.pcap, "pcap", "", "capture file (pcap or pcapng)")
	fs.StringVar(&o.servers, "server", "", "monitored server IPs, comma separated (default: the most frequent destination)")
	fs.DurationVar(&o.window, "window", time.Minute, "window length")
	fs.BoolVar(&o.synNoACK, "syn-without-ack", false, "count only SYN without ACK in syn features")
	if withDetect {
		fs.IntVar(&o.history, "history", 120, "windows in the normal profile (N)")
		fs.Float64Var(&o.k, "k", detect.DefaultK, "normalized detector: threshold = mean + K sd of the history's deviations")
		o.format = addOutput(fs)
	} else {
		o.format = addOutput(fs, "csv")
		fs.StringVar(&o.set, "set", "both", "stability (2018), lstm (2020), extra (beyond the papers), both (2018 and 2020) or all")
	}
	return fs, o
}

func (o *nadOpts) serverList() ([]netip.Addr, error) {
	if o.pcap == "" {
		return nil, fmt.Errorf("--pcap is required")
	}
	if o.servers == "" {
		top, err := nad.TopDestinations(o.pcap, 1)
		if err != nil {
			return nil, err
		}
		if len(top) == 0 {
			return nil, fmt.Errorf("%s holds no IP packets", o.pcap)
		}
		return top, nil
	}
	var out []netip.Addr
	for _, s := range splitList(o.servers) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--server: %q is not an IP address", s)
		}
		out = append(out, a)
	}
	return out, nil
}

func nadFeatures(ctx context.Context, env *Env, args []string) error {
	fs, o := nadFlags("nad features", env, false)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	servers, err := o.serverList()
	if err != nil {
		return err
	}
	sets := map[string][3]bool{"stability": {true, false, false}, "lstm": {false, true, false}, "extra": {false, false, true},
		"both": {true, true, false}, "all": {true, true, true}}
	set, ok := sets[o.set]
	if !ok {
		return fmt.Errorf("--set must be stability, lstm, extra, both or all")
	}
	r, c, err := nad.OpenFile(o.pcap)
	if err != nil {
		return err
	}
	defer c.Close()
	header := []string{"server", "start", "packets", "bytes"}
	if set[0] {
		header = append(header, feature.StabilityNames[:]...)
	}
	if set[1] {
		header = append(header, feature.LSTMNames[:]...)
	}
	if set[2] {
		header = append(header, feature.ExtraNames[:]...)
	}
	cw := csv.NewWriter(env.Stdout)
	if *o.format != FormatJSON && *o.format != FormatYAML { // csv, and table or wide as csv
		cw.Write(header)
	}
	var rows []map[string]any
	cfg := feature.Config{Window: o.window, SYNWithoutACK: o.synNoACK}
	st, err := nad.Run(r, nad.Options{Servers: servers, Features: cfg}, func(res nad.Result) {
		w := res.Window
		vals := []float64{}
		if set[0] {
			vals = append(vals, w.Stability[:]...)
		}
		if set[1] {
			vals = append(vals, w.LSTM[:]...)
		}
		if set[2] {
			vals = append(vals, w.Extra[:]...)
		}
		start := time.Unix(0, w.Start).UTC().Format(time.RFC3339Nano)
		if *o.format == FormatJSON || *o.format == FormatYAML {
			row := map[string]any{"server": w.Server.String(), "start": start, "packets": w.Packets, "bytes": w.Bytes}
			for i, v := range vals {
				row[header[4+i]] = v
			}
			rows = append(rows, row)
			return
		}
		rec := []string{w.Server.String(), start, strconv.Itoa(w.Packets), strconv.Itoa(w.Bytes)}
		for _, v := range vals {
			rec = append(rec, strconv.FormatFloat(v, 'g', 6, 64))
		}
		cw.Write(rec)
	})
	cw.Flush()
	if err != nil {
		return err
	}
	if *o.format == FormatJSON || *o.format == FormatYAML {
		if rows == nil {
			rows = []map[string]any{}
		}
		if err := render(env, *o.format, rows, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stderr, "%d packets, %d decoded, %d not IP, %d malformed\n", st.Packets, st.Decoded, st.NotIP, st.Malformed)
	return cw.Error()
}

func nadDetect(ctx context.Context, env *Env, args []string) error {
	fs, o := nadFlags("nad detect", env, true)
	which := fs.String("detector", "stability,normalized", "detectors, comma separated ("+strings.Join(detect.Names(), ", ")+")")
	models := fs.String("model", "", "trained model files for the lstm detectors, comma separated")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	servers, err := o.serverList()
	if err != nil {
		return err
	}
	ms, err := loadModels(*models)
	if err != nil {
		return err
	}
	names, _, err := detectorList(*which, ms, false)
	if err != nil {
		return err
	}
	for _, n := range names {
		if use, _ := detect.Uses(n); use != detect.NoModel && ms[detect.ModelKind(n)] == nil {
			return fmt.Errorf("detector %s needs --model (a %s from secaas nad train)", n, detect.ModelKind(n))
		}
	}
	r, c, err := nad.OpenFile(o.pcap)
	if err != nil {
		return err
	}
	defer c.Close()
	type row struct {
		Server   string                    `json:"server"`
		Start    string                    `json:"start"`
		Packets  int                       `json:"packets"`
		Verdicts map[string]detect.Verdict `json:"verdicts"`
	}
	rows := []row{}
	alerts, windows, judged := 0, 0, 0
	var first, last int64
	_, err = nad.Run(r, nad.Options{Servers: servers, Features: feature.Config{Window: o.window, SYNWithoutACK: o.synNoACK}, Detectors: names,
		Params: detect.Params{History: o.history, K: o.k, Models: slices.Collect(maps.Values(ms))}},
		func(res nad.Result) {
			w := res.Window
			windows++
			if first == 0 {
				first = w.Start
			}
			last = w.Start
			ready := false
			for _, v := range res.Verdicts {
				ready = ready || v.Ready
			}
			if ready {
				judged++
			}
			start := time.Unix(0, w.Start).UTC().Format(time.RFC3339)
			if *o.format == FormatJSON || *o.format == FormatYAML {
				rows = append(rows, row{w.Server.String(), start, w.Packets, res.Verdicts})
				return
			}
			for _, name := range names {
				v := res.Verdicts[name]
				if !v.Anomaly {
					continue
				}
				alerts++
				var top []string
				for _, t := range v.Top {
					top = append(top, fmt.Sprintf("%s=%.3g(base %.3g)", t.Feature, t.Current, t.Base))
				}
				fmt.Fprintf(env.Stdout, "%s %s %-10s ALERT deviation=%.4g threshold=%.4g packets=%d top: %s\n",
					start, w.Server, name, v.Deviation, v.Threshold, w.Packets, strings.Join(top, " "))
			}
		})
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("%d windows of %s, %d judged", windows, o.window, judged)
	switch {
	case windows == 0:
		summary += fmt.Sprintf(": nothing was judged, so nothing could alert. The capture holds no whole window of %s (its last window, cut short by its end, is never judged); use a shorter --window", o.window)
	case judged == 0:
		summary += fmt.Sprintf(": nothing was judged, so nothing could alert. The stability detectors judge a window only after %d windows of history", o.history)
		if windows > 0 {
			summary += fmt.Sprintf(" and this capture has %d (%s to %s)", windows,
				time.Unix(0, first).UTC().Format(time.TimeOnly), time.Unix(0, last).UTC().Format(time.TimeOnly))
		}
		summary += "; use a shorter --window or a smaller --history"
	}
	if *o.format == FormatJSON || *o.format == FormatYAML {
		return render(env, *o.format, map[string]any{"windows": windows, "judged": judged, "summary": summary, "results": rows}, nil)
	}
	fmt.Fprintf(env.Stderr, "%d alerts; %s\n", alerts, summary)
	return nil
}
