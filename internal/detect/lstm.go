package detect

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"secaas/internal/feature"
	"secaas/internal/lstm"
)

// lstmDetector scores the 2020 features of the last windows with an LSTM
// model: the verdict's Deviation is the model's score, its Threshold the
// model's operating point.
type lstmDetector struct {
	kind   lstm.Kind
	p      Params
	model  *lstm.Model
	scorer *lstm.Scorer
	ring   [][]float64 // the last model.Need() windows, oldest first
}

func newLSTM(p Params, kind lstm.Kind) (*lstmDetector, error) {
	d := &lstmDetector{kind: kind, p: p}
	m := p.model(kind)
	if m == nil {
		if kind == lstm.Classifier {
			return nil, fmt.Errorf("needs a trained model (secaas nad train)")
		}
		return d, nil // trained by Fit
	}
	return d, d.use(m)
}

func (d *lstmDetector) use(m *lstm.Model) error {
	if m.Kind != d.kind {
		return fmt.Errorf("model is a %s, this detector needs a %s", m.Kind, d.kind)
	}
	want := ModelFeatures(d.kind)
	if m.Arch.Features != len(want) || (m.Features != nil && !slices.Equal(m.Features, want)) {
		return fmt.Errorf("model was trained on features %v, this detector uses %v", m.Features, want)
	}
	if d.p.Window > 0 && m.Window > 0 && m.Window != d.p.Window {
		return fmt.Errorf("model was trained on %s windows, these are %s", m.Window, d.p.Window)
	}
	d.model, d.scorer = m, m.Scorer()
	return nil
}

// Fit trains a forecaster on ws (benign windows) when no model was given;
// with a model, it only primes the sequence with the last windows.
func (d *lstmDetector) Fit(ws []feature.Window) error {
	if d.model == nil {
		x := ModelInputs(d.kind, ws)
		cfg := d.p.Train
		cfg.Kind = lstm.Forecaster
		cfg.Arch.Features = len(ModelFeatures(d.kind))
		if cfg.Arch.Seq == 0 {
			cfg.Arch.Seq = DefaultSeq
		}
		cfg.Progress = d.p.Progress
		m, err := lstm.Train(context.Background(), cfg, x, nil)
		if err != nil {
			return err
		}
		m.Features = ModelFeatures(d.kind)
		if len(ws) > 0 {
			m.Window = ws[0].Duration
		}
		if err := d.use(m); err != nil {
			return err
		}
	}
	for i := range ws {
		d.push(&ws[i])
	}
	return nil
}

// DefaultSeq is the sequence length T of LSTM models trained by secaas
// (the paper does not give its T): 10 windows.
const DefaultSeq = 10

func (d *lstmDetector) push(w *feature.Window) {
	need := d.model.Need()
	if len(d.ring) == need {
		v := d.ring[0]
		copy(d.ring, d.ring[1:])
		d.ring[need-1] = v
	} else {
		d.ring = append(d.ring, nil)
	}
	d.ring[len(d.ring)-1] = modelInput(d.kind, w, d.ring[len(d.ring)-1])
}

// Observe scores w once the model has the windows it needs before it.
func (d *lstmDetector) Observe(w *feature.Window) Verdict {
	if d.model == nil {
		return Verdict{} // a forecaster not fitted yet
	}
	d.push(w)
	if len(d.ring) < d.model.Need() {
		return Verdict{}
	}
	s, err := d.scorer.Score(d.ring)
	if err != nil {
		return Verdict{}
	}
	v := Verdict{Ready: true, Deviation: s, Threshold: d.model.Threshold, Anomaly: s > d.model.Threshold}
	if fc, share := d.scorer.Forecast(); fc != nil {
		// The features the forecast missed most, against what it expected.
		for j := range share {
			v.Top = append(v.Top, Contribution{Feature: d.model.Features[j], Value: share[j], Current: d.ring[len(d.ring)-1][j], Base: fc[j]})
		}
		sort.SliceStable(v.Top, func(a, b int) bool { return v.Top[a].Value > v.Top[b].Value })
		v.Top = v.Top[:min(3, len(v.Top))]
	}
	return v
}

// ModelFeatures are the features a model of kind k reads: LSTM-NAD the 2020
// paper's 11; the forecaster (ours) those and the extra ones.
func ModelFeatures(k lstm.Kind) []string {
	names := append([]string(nil), feature.LSTMNames[:]...)
	if k == lstm.Forecaster {
		names = append(names, feature.ExtraNames[:]...)
	}
	return names
}

// modelInput writes w's vector for a model of kind k into dst (reused).
func modelInput(k lstm.Kind, w *feature.Window, dst []float64) []float64 {
	dst = append(dst[:0], w.LSTM[:]...)
	if k == lstm.Forecaster {
		dst = append(dst, w.Extra[:]...)
	}
	return dst
}

// ModelInputs are the vectors of ws for a model of kind k.
func ModelInputs(k lstm.Kind, ws []feature.Window) [][]float64 {
	x := make([][]float64, len(ws))
	for i := range ws {
		x[i] = modelInput(k, &ws[i], nil)
	}
	return x
}
