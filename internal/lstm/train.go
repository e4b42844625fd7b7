package lstm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Kind says what a model predicts.
type Kind string

// Model kinds.
const (
	// Classifier is the paper's LSTM-NAD: the probability that the last
	// window of a sequence is anomalous, trained on labelled windows.
	Classifier Kind = "classifier"
	// Forecaster is trained on benign windows only: it predicts the next
	// window's features from the T before it; the score is the squared
	// error of that forecast.
	Forecaster Kind = "forecaster"
)

// TrainConfig configures Train.
type TrainConfig struct {
	Kind   Kind
	Arch   Arch    // Features and Seq are required; Out is set by Kind; zero sizes take PaperArch's
	Epochs int     // default 50 (the paper's)
	Batch  int     // default 64
	LR     float64 // Adam's step, default 1e-3
	Seed   uint64
	// Val is the fraction of the series, at its end, held out to choose the
	// best epoch (default 0.2).
	Val float64
	// Margin multiplies a forecaster's threshold, the largest score on the
	// held-out windows (default DefaultMargin).
	Margin   float64
	Progress func(Epoch)
}

// Epoch reports one finished epoch.
type Epoch struct {
	N, Of            int
	Loss, ValLoss    float64 // mean per window (class-weighted for a classifier)
	ValAUC           float64 // classifier only; NaN when the held-out part has one class
	Best             bool    // the best validation loss so far (its weights are kept)
	Elapsed, Remains time.Duration
}

// DefaultMargin is a forecaster's threshold over the largest held-out
// score. Chosen on the varied lab's tuning capture (seed 41,
// docs/nad-lstm.md) as the largest margin that loses at most one episode
// found at 1.5.
const DefaultMargin = 2

// minBatch is the smallest batch Train shrinks to on a short series.
const minBatch = 8

// shards: a batch is always cut into this many parts, summed in order, so
// that a seed gives the same model on any number of cores.
const shards = 4

func (c *TrainConfig) defaults() {
	p := PaperArch(c.Arch.Features, c.Arch.Seq, 1)
	a := &c.Arch
	for _, f := range []struct {
		v *int
		d int
	}{{&a.LSTM1, p.LSTM1}, {&a.LSTM2, p.LSTM2}, {&a.Dense1, p.Dense1}, {&a.Dense2, p.Dense2}} {
		if *f.v == 0 {
			*f.v = f.d
		}
	}
	if a.Dropout == 0 {
		a.Dropout = p.Dropout
	}
	a.Out = 1
	if c.Kind == Forecaster {
		a.Out = a.Features
	}
	if c.Epochs <= 0 {
		c.Epochs = 50
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.LR <= 0 {
		c.LR = 1e-3
	}
	if c.Val <= 0 || c.Val >= 1 {
		c.Val = 0.2
	}
	if c.Margin <= 0 {
		c.Margin = DefaultMargin
	}
}

// ErrNoAnomalies: a classifier's training part holds no anomalous window.
var ErrNoAnomalies = errors.New("the training windows hold no anomalous window: a classifier needs labelled attacks (the forecaster does not)")

// Train fits a model on a series of raw feature vectors x (one per
// window, in time order) and, for a classifier, their labels. The
// normalisation is fitted on the training part only (the series minus the
// held-out end).
func Train(ctx context.Context, cfg TrainConfig, x [][]float64, labels []bool) (*Model, error) {
	cfg.defaults()
	if cfg.Kind != Classifier && cfg.Kind != Forecaster {
		return nil, fmt.Errorf("train: unknown kind %q", cfg.Kind)
	}
	if err := cfg.Arch.validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	F, T := cfg.Arch.Features, cfg.Arch.Seq
	if err := checkSeries(x, F); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if cfg.Kind == Classifier && len(labels) != len(x) {
		return nil, fmt.Errorf("train: %d labels for %d windows", len(labels), len(x))
	}
	split := int(float64(len(x)) * (1 - cfg.Val))
	first := T - 1 // the first window that ends a whole sequence
	if cfg.Kind == Forecaster {
		first = T
	}
	if split-first < 2*minBatch || len(x)-split < 2 {
		return nil, fmt.Errorf("train: %d windows are too few for sequences of %d with %.0f %% held out (at least %d training sequences are needed)", len(x), T, 100*cfg.Val, 2*minBatch)
	}
	if split-first < cfg.Batch {
		cfg.Batch = max(minBatch, (split-first)/2) // a short series: smaller batches, at least two per epoch
	}
	m := &Model{Kind: cfg.Kind, Arch: cfg.Arch, Seed: cfg.Seed}
	m.fitNorm(x[:split])
	z := m.normalize(x)
	var tr, va []int
	for i := first; i < len(x); i++ {
		if i < split {
			tr = append(tr, i)
		} else {
			va = append(va, i)
		}
	}
	// Class weights: the rare anomalous windows weigh as much, in sum, as
	// the normal ones (the paper oversampled them to the same effect).
	var weight [2]float64
	if cfg.Kind == Classifier {
		var pos int
		for _, i := range tr {
			if labels[i] {
				pos++
			}
		}
		if pos == 0 {
			return nil, ErrNoAnomalies
		}
		neg := len(tr) - pos
		weight = [2]float64{float64(len(tr)) / (2 * float64(max(neg, 1))), float64(len(tr)) / (2 * float64(pos))}
	}
	tt := &trainer{cfg: cfg, z: z, labels: labels, weight: weight}
	tt.master = newNet(cfg.Arch, cfg.Seed)
	tt.ps = tt.master.params()
	for s := 0; s < shards; s++ {
		c := tt.master.copyShared(cfg.Seed*31 + uint64(s) + 1)
		tt.copies = append(tt.copies, c)
		tt.cps = append(tt.cps, c.params())
		tt.bufs = append(tt.bufs, nil)
	}
	tt.adam = newAdam(tt.ps, cfg.LR)
	r := rand.New(rand.NewPCG(cfg.Seed, 0x7a1))
	best := math.Inf(1)
	bestW := snapshot(tt.ps)
	start := time.Now()
	for ep := 1; ep <= cfg.Epochs; ep++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r.Shuffle(len(tr), func(i, j int) { tr[i], tr[j] = tr[j], tr[i] })
		var sum float64
		for b := 0; b+cfg.Batch <= len(tr); b += cfg.Batch {
			sum += tt.step(tr[b : b+cfg.Batch])
		}
		full := len(tr) / cfg.Batch * cfg.Batch
		valLoss, scores := tt.evaluate(va)
		e := Epoch{N: ep, Of: cfg.Epochs, Loss: sum / float64(full), ValLoss: valLoss, ValAUC: math.NaN()}
		if cfg.Kind == Classifier {
			e.ValAUC = AUC(scores, func(k int) bool { return labels[va[k]] })
		}
		if valLoss < best {
			best, e.Best = valLoss, true
			bestW = snapshot(tt.ps)
			m.Epoch, m.ValLoss = ep, valLoss
		}
		e.Elapsed = time.Since(start)
		e.Remains = e.Elapsed / time.Duration(ep) * time.Duration(cfg.Epochs-ep)
		if cfg.Progress != nil {
			cfg.Progress(e)
		}
	}
	restore(tt.ps, bestW)
	m.net = tt.master
	m.Threshold = 0.5
	if cfg.Kind == Forecaster {
		_, scores := tt.evaluate(va)
		m.Threshold = cfg.Margin * maxOf(scores)
	}
	return m, nil
}

func maxOf(s []float64) float64 {
	m := 0.0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

func checkSeries(x [][]float64, f int) error {
	for i, v := range x {
		if len(v) != f {
			return fmt.Errorf("window %d has %d features, want %d", i, len(v), f)
		}
		for j, e := range v {
			if math.IsNaN(e) || math.IsInf(e, 0) {
				return fmt.Errorf("window %d feature %d is %v", i, j, e)
			}
		}
	}
	return nil
}

type trainer struct {
	cfg    TrainConfig
	z      [][]float64 // normalised series
	labels []bool
	weight [2]float64
	master *net
	copies []*net
	cps    [][]param // each copy's params
	bufs   []*shardBuf
	ps     []param
	adam   *adam
}

// shardInput fills xs (T steps of len(idx)×F), the targets and weights of
// the samples ending at the windows idx.
func (tt *trainer) shardInput(idx []int, xs [][]float64, target, weight []float64) {
	F, T := tt.cfg.Arch.Features, tt.cfg.Arch.Seq
	fc := tt.cfg.Kind == Forecaster
	for r, i := range idx {
		end := i // the sequence's last window
		if fc {
			end = i - 1
		}
		for t := 0; t < T; t++ {
			copy(xs[t][r*F:(r+1)*F], tt.z[end-T+1+t])
		}
		if fc {
			copy(target[r*F:(r+1)*F], tt.z[i])
			weight[r] = 1
		} else {
			target[r], weight[r] = 0, tt.weight[0]
			if tt.labels[i] {
				target[r], weight[r] = 1, tt.weight[1]
			}
		}
	}
}

type shardBuf struct {
	xs                 [][]float64
	target, weight, dy []float64
}

func (tt *trainer) newShardBuf(n int) *shardBuf {
	a := tt.cfg.Arch
	b := &shardBuf{xs: make([][]float64, a.Seq), target: make([]float64, n*a.Out), weight: make([]float64, n), dy: make([]float64, n*a.Out)}
	for t := range b.xs {
		b.xs[t] = make([]float64, n*a.Features)
	}
	return b
}

func (tt *trainer) lossKind() int {
	if tt.cfg.Kind == Forecaster {
		return lossMSE
	}
	return lossBCE
}

// step trains on one batch and returns its summed loss.
func (tt *trainer) step(batch []int) float64 {
	var wg sync.WaitGroup
	losses := make([]float64, shards)
	per := (len(batch) + shards - 1) / shards
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for s := 0; s < shards; s++ {
		lo, hi := min(s*per, len(batch)), min((s+1)*per, len(batch))
		if lo == hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			n := tt.copies[s]
			n.zeroGrad()
			if tt.bufs[s] == nil || len(tt.bufs[s].weight) != hi-lo {
				tt.bufs[s] = tt.newShardBuf(hi - lo)
			}
			b := tt.bufs[s]
			tt.shardInput(batch[lo:hi], b.xs, b.target, b.weight)
			out := n.forward(b.xs, hi-lo, true)
			losses[s] = lossGrad(tt.lossKind(), out, b.target, b.weight, b.dy, tt.cfg.Arch.Out, len(batch))
			n.backward(b.dy, hi-lo)
		}()
	}
	wg.Wait()
	var sum float64
	for i, p := range tt.ps {
		clear(p.g)
		for s := 0; s < shards; s++ {
			for j, g := range tt.cps[s][i].g {
				p.g[j] += g
			}
		}
	}
	for _, l := range losses {
		sum += l
	}
	tt.adam.step(tt.ps)
	return sum
}

// evaluate returns the mean loss over the windows idx (no dropout) and
// each one's score.
func (tt *trainer) evaluate(idx []int) (float64, []float64) {
	scores := make([]float64, len(idx))
	var sum float64
	const chunk = 256
	n := tt.copies[0]
	b := tt.newShardBuf(chunk)
	for lo := 0; lo < len(idx); lo += chunk {
		hi := min(lo+chunk, len(idx))
		k := hi - lo
		bb := &shardBuf{xs: make([][]float64, len(b.xs)), target: b.target[:k*tt.cfg.Arch.Out], weight: b.weight[:k], dy: b.dy[:k*tt.cfg.Arch.Out]}
		for t := range b.xs {
			bb.xs[t] = b.xs[t][:k*tt.cfg.Arch.Features]
		}
		tt.shardInput(idx[lo:hi], bb.xs, bb.target, bb.weight)
		out := n.forward(bb.xs, k, false)
		sum += lossGrad(tt.lossKind(), out, bb.target, bb.weight, bb.dy, tt.cfg.Arch.Out, k)
		for r := 0; r < k; r++ {
			scores[lo+r] = scoreOf(tt.cfg.Kind, out[r*tt.cfg.Arch.Out:(r+1)*tt.cfg.Arch.Out], bb.target[r*tt.cfg.Arch.Out:(r+1)*tt.cfg.Arch.Out])
		}
	}
	return sum / float64(max(1, len(idx))), scores
}

// scoreOf turns one sample's outputs into its anomaly score: the
// probability for a classifier, the mean squared forecast error for a
// forecaster.
func scoreOf(kind Kind, out, target []float64) float64 {
	if kind == Classifier {
		return sigmoid(out[0])
	}
	var s float64
	for i, v := range out {
		e := v - target[i]
		s += e * e
	}
	return s / float64(len(out))
}

// adam is Kingma & Ba's optimiser with the usual constants.
type adam struct {
	lr   float64
	t    int
	m, v [][]float64
}

func newAdam(ps []param, lr float64) *adam {
	a := &adam{lr: lr}
	for _, p := range ps {
		a.m = append(a.m, make([]float64, len(p.w)))
		a.v = append(a.v, make([]float64, len(p.w)))
	}
	return a
}

func (a *adam) step(ps []param) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	a.t++
	c1 := 1 - math.Pow(b1, float64(a.t))
	c2 := 1 - math.Pow(b2, float64(a.t))
	for i, p := range ps {
		m, v := a.m[i], a.v[i]
		for j, g := range p.g {
			m[j] = b1*m[j] + (1-b1)*g
			v[j] = b2*v[j] + (1-b2)*g*g
			p.w[j] -= a.lr * (m[j] / c1) / (math.Sqrt(v[j]/c2) + eps)
		}
	}
}

func snapshot(ps []param) [][]float64 {
	out := make([][]float64, len(ps))
	for i, p := range ps {
		out[i] = append([]float64(nil), p.w...)
	}
	return out
}

func restore(ps []param, w [][]float64) {
	for i, p := range ps {
		copy(p.w, w[i])
	}
}

// AUC is the area under the ROC curve of scores against the positives
// pos(i) (ties count half); NaN without both classes.
func AUC(scores []float64, pos func(int) bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var np, nn, rankSum float64
	for k := 0; k < len(idx); {
		j := k
		for j < len(idx) && scores[idx[j]] == scores[idx[k]] {
			j++
		}
		rank := float64(k+j+1) / 2 // mean rank (1-based) of the tie group
		for _, i := range idx[k:j] {
			if pos(i) {
				np++
				rankSum += rank
			} else {
				nn++
			}
		}
		k = j
	}
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	return (rankSum - np*(np+1)/2) / (np * nn)
}
