package nad

import (
	"fmt"

	"io"
	"secaas/internal/detect"
	"secaas/internal/feature"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// PaperRates are the detection rates (%) of the 2018 paper's Table 5.
var PaperRates = map[string]map[int]float64{
	PortScan: {120: 16.7, 240: 100, 600: 100},
	SYNFlood: {600: 36.7, 1800: 93.3, 3000: 100},
	UDPFlood: {600: 80, 1200: 93.3, 1800: 100},
}

// Cell is one (type, scale) setting of the detection grid.
type Cell struct {
	Type      string  `json:"type"`
	Scale     int     `json:"scale"`
	Attacks   int     `json:"attacks"`
	Detected  int     `json:"detected"`
	Rate      float64 `json:"rate"`       // %
	PaperRate float64 `json:"paper_rate"` // %
	MeanTTD   float64 `json:"mean_time_to_detect_s"`
}

// Evaluation of one detector on one labelled capture.
type Evaluation struct {
	Detector      string  `json:"name"`
	AUC           float64 `json:"auc"` // ROC AUC over judged windows; 0 without both classes
	WindowsJudged int     `json:"windows_judged"`
	BenignWindows int     `json:"benign_windows"`
	FalseAlarms   int     `json:"false_alarm_windows"`
	// FalseAlarmsPerHour counts false alarms as an operator sees them: a
	// run of consecutive alarmed benign windows is one alarm; per hour of
	// judged benign windows.
	FalseAlarmsPerHour float64      `json:"false_alarms_per_hour"`
	FPR                float64      `json:"fpr"` // % of benign windows alarmed
	Episodes           []Episode    `json:"episodes"`
	Grid               []Cell       `json:"grid"`
	ROC                [][2]float64 `json:"-"` // (fpr, tpr) points
	WarmupWindows      int          `json:"warmup_windows"`
	Margin             string       `json:"margin"`
	Aftermath          int          `json:"aftermath_windows"` // left out by the margin
}

// Episode is one labelled attack and whether the detector found it.
type Episode struct {
	Kind     string    `json:"kind"`
	Scale    int       `json:"scale,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Detected bool      `json:"detected"`
	// FirstAlertAfter: from the attack's start to the end of the first
	// alarmed window overlapping it (seconds); absent when not detected.
	FirstAlertAfter *float64 `json:"first_alert_after_s,omitempty"`
	// Judged is false when the attack lies before the detector judged
	// anything (in its training part or warm-up).
	Judged bool `json:"judged"`
}

// Evaluate scores the verdicts of detector name in results against labels.
// A window is an attack window if it overlaps an attack; an attack is
// detected if a window overlapping it raised an alarm (time to detect: from
// the attack's start to the end of that window). Windows overlapping no
// attack are benign; warm-up windows (no verdict yet) are left out.
//
// margin > 0 leaves out of the benign set the windows that start within
// margin after an attack ended: the attack's aftermath (the server
// retransmitting SYN-ACKs to spoofed sources, late scan replies) is neither
// attack nor normal traffic.
func Evaluate(name string, results []Result, labels *Labels, margin time.Duration) Evaluation {
	ev := Evaluation{Detector: name, Margin: margin.String(), Grid: []Cell{}}
	type scored struct {
		score  float64
		attack bool
	}
	var pts []scored
	cells := map[[2]any]*Cell{}
	key := func(a Attack) [2]any {
		if strings.HasPrefix(a.Type, Replay) {
			return [2]any{a.Type, 0} // one row per capture, whatever it kept
		}
		return [2]any{a.Type, a.Scale}
	}
	for _, a := range labels.Attacks {
		c := cells[key(a)]
		if c == nil {
			c = &Cell{Type: a.Type, Scale: a.Scale, PaperRate: PaperRates[a.Type][a.Scale]}
			cells[key(a)] = c
		}
		c.Attacks++
	}
	detectedAt := make([]time.Time, len(labels.Attacks))
	judged := make([]bool, len(labels.Attacks))
	var benignDur time.Duration
	prevFalse := false
	for _, r := range results {
		v, ok := r.Verdicts[name]
		if !ok || !v.Ready {
			ev.WarmupWindows++
			continue
		}
		ws := time.Unix(0, r.Window.Start)
		we := ws.Add(r.Window.Duration)
		ev.WindowsJudged++
		hit, after := false, false
		for i, a := range labels.Attacks {
			if a.Start.Before(we) && !a.End.Before(ws) {
				hit = true
				judged[i] = true
				if v.Anomaly && detectedAt[i].IsZero() {
					detectedAt[i] = we
				}
			}
			if margin > 0 && ws.After(a.End) && ws.Sub(a.End) <= margin {
				after = true
			}
		}
		if !hit && after {
			ev.Aftermath++
			prevFalse = false
			continue
		}
		score := 0.0
		if v.Threshold > 0 {
			score = v.Deviation / v.Threshold
		}
		pts = append(pts, scored{score, hit})
		if !hit {
			ev.BenignWindows++
			benignDur += r.Window.Duration
			if v.Anomaly {
				ev.FalseAlarms++
				if !prevFalse {
					ev.FalseAlarmsPerHour++ // counted as runs; divided below
				}
			}
		}
		prevFalse = !hit && v.Anomaly
	}
	if benignDur > 0 {
		ev.FalseAlarmsPerHour /= benignDur.Hours()
	} else {
		ev.FalseAlarmsPerHour = 0
	}
	ev.Episodes = make([]Episode, len(labels.Attacks))
	for i, a := range labels.Attacks {
		e := Episode{Kind: a.Type, Scale: a.Scale, Start: a.Start, End: a.End, Judged: judged[i], Detected: !detectedAt[i].IsZero()}
		if e.Detected {
			d := detectedAt[i].Sub(a.Start).Seconds()
			e.FirstAlertAfter = &d
		}
		ev.Episodes[i] = e
	}
	for i, a := range labels.Attacks {
		if !detectedAt[i].IsZero() {
			c := cells[key(a)]
			c.Detected++
			c.MeanTTD += detectedAt[i].Sub(a.Start).Seconds()
		}
	}
	for _, c := range cells {
		if c.Attacks > 0 {
			c.Rate = 100 * float64(c.Detected) / float64(c.Attacks)
		}
		if c.Detected > 0 {
			c.MeanTTD /= float64(c.Detected)
		}
		ev.Grid = append(ev.Grid, *c)
	}
	order := map[string]int{}
	for i, k := range Kinds {
		order[k] = i
	}
	sort.Slice(ev.Grid, func(i, j int) bool {
		a, b := ev.Grid[i], ev.Grid[j]
		if a.Type != b.Type {
			return order[a.Type] < order[b.Type]
		}
		return a.Scale < b.Scale
	})
	if ev.BenignWindows > 0 {
		ev.FPR = 100 * float64(ev.FalseAlarms) / float64(ev.BenignWindows)
	}
	// ROC over windows: score = deviation / threshold.
	sort.Slice(pts, func(i, j int) bool { return pts[i].score > pts[j].score })
	var pos, neg float64
	for _, p := range pts {
		if p.attack {
			pos++
		} else {
			neg++
		}
	}
	if pos > 0 && neg > 0 {
		var tp, fp, auc, prevFPR, prevTPR float64
		ev.ROC = append(ev.ROC, [2]float64{0, 0})
		for i, p := range pts {
			if p.attack {
				tp++
			} else {
				fp++
			}
			if i+1 < len(pts) && pts[i+1].score == p.score {
				continue // ties move together
			}
			fpr, tpr := fp/neg, tp/pos
			auc += (fpr - prevFPR) * (tpr + prevTPR) / 2
			prevFPR, prevTPR = fpr, tpr
			ev.ROC = append(ev.ROC, [2]float64{fpr, tpr})
		}
		ev.AUC = auc
	}
	return ev
}

// WriteEvaluation prints the Table 5 grid with the paper's rates beside.
func WriteEvaluation(w io.Writer, ev Evaluation) {
	fmt.Fprintf(w, "Detector %s: Table 5 (2018 paper) re-run\n\n", ev.Detector)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| attack\t scale\t attacks\t detected\t rate %\t paper rate %\t mean time to detect\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t")
	for _, c := range ev.Grid {
		paper := "-"
		if _, ok := PaperRates[c.Type]; ok {
			paper = fmt.Sprintf("%.1f", c.PaperRate)
		}
		fmt.Fprintf(tw, "| %s\t %d\t %d\t %d\t %.1f\t %s\t %.1f s\t\n", c.Type, c.Scale, c.Attacks, c.Detected, c.Rate, paper, c.MeanTTD)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nWindows judged: %d; benign: %d, alarmed: %d (FPR %.2f %%, %.1f false alarms per hour); ROC AUC over windows: %.3f; warm-up windows: %d",
		ev.WindowsJudged, ev.BenignWindows, ev.FalseAlarms, ev.FPR, ev.FalseAlarmsPerHour, ev.AUC, ev.WarmupWindows)
	if ev.Aftermath > 0 {
		fmt.Fprintf(w, "; %d aftermath windows (within %s after an attack) left out", ev.Aftermath, ev.Margin)
	}
	fmt.Fprintln(w)
}

// Judge runs the detectors registered as names over one server's windows
// (in time order). Windows that start before trainUntil are training:
// a detector that fits (detect.Fitter) fits on them, the others observe
// them unjudged; only the windows after are returned, with verdicts.
// A zero trainUntil judges every window.
func Judge(ws []feature.Window, names []string, p detect.Params, trainUntil time.Time) ([]Result, error) {
	split := 0
	for split < len(ws) && time.Unix(0, ws[split].Start).Before(trainUntil) {
		split++
	}
	if len(ws) > 0 && p.Window == 0 {
		p.Window = ws[0].Duration
	}
	out := make([]Result, len(ws)-split)
	for i := range out {
		out[i] = Result{Window: ws[split+i], Verdicts: make(map[string]detect.Verdict, len(names))}
	}
	for _, n := range names {
		d, err := detect.New(n, p)
		if err != nil {
			return nil, err
		}
		if f, ok := d.(detect.Fitter); ok {
			if err := f.Fit(ws[:split]); err != nil {
				return nil, fmt.Errorf("detector %s: fit on %d windows: %w", n, split, err)
			}
		} else {
			for i := range ws[:split] {
				d.Observe(&ws[i])
			}
		}
		for i := range out {
			out[i].Verdicts[n] = d.Observe(&out[i].Window)
		}
	}
	return out, nil
}

// WindowLabels marks the windows that overlap a labelled attack (all
// false without labels).
func WindowLabels(ws []feature.Window, labels *Labels) []bool {
	out := make([]bool, len(ws))
	if labels == nil {
		return out
	}
	for i := range ws {
		s := time.Unix(0, ws[i].Start)
		e := s.Add(ws[i].Duration)
		for _, a := range labels.Attacks {
			if a.Start.Before(e) && !a.End.Before(s) {
				out[i] = true
				break
			}
		}
	}
	return out
}
