package nad

import (
	"fmt"
	"io"
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
	Detector      string       `json:"detector"`
	Grid          []Cell       `json:"grid"`
	BenignWindows int          `json:"benign_windows"`
	FalseAlarms   int          `json:"false_alarms"`
	FPR           float64      `json:"fpr"` // %
	AUC           float64      `json:"roc_auc"`
	ROC           [][2]float64 `json:"-"` // (fpr, tpr) points
	WarmupWindows int          `json:"warmup_windows"`
	Margin        string       `json:"margin"`
	Aftermath     int          `json:"aftermath_windows"` // left out by the margin
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
	ev := Evaluation{Detector: name, Margin: margin.String()}
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
	for _, r := range results {
		v, ok := r.Verdicts[name]
		if !ok || !v.Ready {
			ev.WarmupWindows++
			continue
		}
		ws := time.Unix(0, r.Window.Start)
		we := ws.Add(r.Window.Duration)
		hit, after := false, false
		for i, a := range labels.Attacks {
			if a.Start.Before(we) && !a.End.Before(ws) {
				hit = true
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
			continue
		}
		score := 0.0
		if v.Threshold > 0 {
			score = v.Deviation / v.Threshold
		}
		pts = append(pts, scored{score, hit})
		if !hit {
			ev.BenignWindows++
			if v.Anomaly {
				ev.FalseAlarms++
			}
		}
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
	order := map[string]int{PortScan: 0, SYNFlood: 1, UDPFlood: 2}
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
	fmt.Fprintf(w, "\nBenign windows: %d, false alarms: %d (FPR %.2f %%); ROC AUC over windows: %.3f; warm-up windows: %d",
		ev.BenignWindows, ev.FalseAlarms, ev.FPR, ev.AUC, ev.WarmupWindows)
	if ev.Aftermath > 0 {
		fmt.Fprintf(w, "; %d aftermath windows (within %s after an attack) left out", ev.Aftermath, ev.Margin)
	}
	fmt.Fprintln(w)
}
