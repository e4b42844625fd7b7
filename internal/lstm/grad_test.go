package lstm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// numeric compares every analytic gradient of ps with central differences
// of loss, on a random subset of at most per entries per tensor.
func numeric(t *testing.T, name string, ps []param, loss func() float64, grads func(), per int) {
	t.Helper()
	grads()
	r := rand.New(rand.NewPCG(7, 7))
	const h = 1e-6
	checked := 0
	for pi, p := range ps {
		idx := r.Perm(len(p.w))
		if len(idx) > per {
			idx = idx[:per]
		}
		for _, i := range idx {
			old := p.w[i]
			p.w[i] = old + h
			lp := loss()
			p.w[i] = old - h
			lm := loss()
			p.w[i] = old
			num := (lp - lm) / (2 * h)
			an := p.g[i]
			if d := math.Abs(num - an); d > 1e-6+1e-4*math.Max(math.Abs(num), math.Abs(an)) {
				t.Errorf("%s: param %d[%d]: analytic %.8g, numeric %.8g", name, pi, i, an, num)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatalf("%s: nothing checked", name)
	}
}

func randSlice(r *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = r.NormFloat64()
	}
	return s
}

// weighted is a fixed random linear functional of outputs, so that every
// output's gradient differs.
func weighted(out, w []float64) float64 {
	s := 0.0
	for i, v := range out {
		s += v * w[i]
	}
	return s
}

func TestGradRecurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const in, h, T, bsz = 3, 4, 5, 2
	l := newRecurrent(in, h, r)
	ps := l.params()
	xs := make([][]float64, T)
	ws := make([][]float64, T)
	for i := range xs {
		xs[i] = randSlice(r, bsz*in)
		ws[i] = randSlice(r, bsz*h)
	}
	loss := func() float64 {
		hs := l.forward(xs, bsz)
		s := 0.0
		for i := range hs {
			s += weighted(hs[i], ws[i])
		}
		return s
	}
	var dxs [][]float64
	grads := func() {
		for _, p := range ps {
			clear(p.g)
		}
		loss()
		dxs = l.backward(ws, bsz, nil)
	}
	numeric(t, "lstm weights", ps, loss, grads, 40)
	// and the input gradient
	inputs := make([]param, T)
	for i := range xs {
		inputs[i] = param{xs[i], dxs[i]}
	}
	numeric(t, "lstm inputs", inputs, loss, func() {}, 10)
}

func TestGradRecurrentLastStepOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const in, h, T, bsz = 2, 3, 6, 3
	l := newRecurrent(in, h, r)
	ps := l.params()
	xs := make([][]float64, T)
	for i := range xs {
		xs[i] = randSlice(r, bsz*in)
	}
	w := randSlice(r, bsz*h)
	loss := func() float64 { hs := l.forward(xs, bsz); return weighted(hs[T-1], w) }
	grads := func() {
		for _, p := range ps {
			clear(p.g)
		}
		loss()
		d := make([][]float64, T)
		d[T-1] = append([]float64(nil), w...)
		l.backward(d, bsz, nil)
	}
	numeric(t, "lstm last step", ps, loss, grads, 40)
}

func TestGradDense(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, act := range []int{actLinear, actReLU} {
		const in, out, bsz = 4, 3, 5
		d := newDense(in, out, act, r)
		ps := d.params()
		x := randSlice(r, bsz*in)
		w := randSlice(r, bsz*out)
		loss := func() float64 { return weighted(d.forward(x, bsz), w) }
		var dx []float64
		grads := func() {
			for _, p := range ps {
				clear(p.g)
			}
			loss()
			dx = d.backward(append([]float64(nil), w...), bsz)
		}
		numeric(t, "dense", ps, loss, grads, 20)
		numeric(t, "dense input", []param{{x, append([]float64(nil), dx...)}}, loss, func() {}, 20)
	}
}

// TestGradNet checks the whole network with both losses, dropout on (the
// mask is drawn once and replayed for every evaluation).
func TestGradNet(t *testing.T) {
	for _, kind := range []int{lossBCE, lossMSE} {
		a := Arch{Features: 3, Seq: 4, LSTM1: 5, LSTM2: 4, Dense1: 6, Dense2: 5, Out: 1, Dropout: 0.3}
		if kind == lossMSE {
			a.Out = 3
		}
		n := newNet(a, 11)
		ps := n.params()
		r := rand.New(rand.NewPCG(9, 9))
		// Biases off zero, so that no ReLU sits exactly on its kink (where
		// the numeric derivative is half the slope).
		for _, b := range [][]float64{n.d1.B, n.d2.B, n.d3.B} {
			for i := range b {
				b[i] = 0.1 + 0.2*r.Float64()
			}
		}
		const bsz = 3
		xs := make([][]float64, a.Seq)
		for i := range xs {
			xs[i] = randSlice(r, bsz*a.Features)
		}
		target := make([]float64, bsz*a.Out)
		for i := range target {
			if kind == lossBCE {
				target[i] = float64(r.IntN(2))
			} else {
				target[i] = r.NormFloat64()
			}
		}
		dy := make([]float64, bsz*a.Out)
		weight := []float64{1, 3.5, 0.5} // class weights enter the gradient too
		seed := uint64(42)
		loss := func() float64 {
			n.rng = rand.New(rand.NewPCG(seed, 1)) // the same dropout masks every time
			out := n.forward(xs, bsz, true)
			return lossGrad(kind, out, target, weight, dy, a.Out, bsz) / bsz
		}
		grads := func() {
			n.zeroGrad()
			loss()
			n.backward(dy, bsz)
		}
		numeric(t, "net", ps, loss, grads, 12)
	}
}

// TestGradCheckCatchesBrokenBackward: the check itself fails when a
// backward pass is wrong (here: the forget gate's gradient dropped).
func TestGradCheckCatchesBrokenBackward(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := newRecurrent(2, 3, r)
	ps := l.params()
	xs := [][]float64{randSlice(r, 2), randSlice(r, 2), randSlice(r, 2)}
	w := randSlice(r, 3)
	loss := func() float64 { hs := l.forward(xs, 1); return weighted(hs[2], w) }
	grads := func() {
		for _, p := range ps {
			clear(p.g)
		}
		loss()
		d := [][]float64{nil, nil, append([]float64(nil), w...)}
		l.backward(d, 1, nil)
		for j := 3; j < 6; j++ { // the forget gate's bias gradient, broken
			l.dB[j] = 0
		}
	}
	ft := &testing.T{}
	numeric(ft, "broken", ps, loss, grads, 100)
	if !ft.Failed() {
		t.Fatal("a broken forget-gate gradient passed the gradient check")
	}
}

func BenchmarkForwardOne(b *testing.B) {
	a := PaperArch(11, 10, 1)
	n := newNet(a, 1)
	xs := make([][]float64, a.Seq)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range xs {
		xs[i] = randSlice(r, a.Features)
	}
	b.ReportAllocs()
	for b.Loop() {
		n.forward(xs, 1, false)
	}
}

func BenchmarkTrainBatch64(b *testing.B) {
	a := PaperArch(11, 10, 1)
	n := newNet(a, 1)
	const bsz = 64
	xs := make([][]float64, a.Seq)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range xs {
		xs[i] = randSlice(r, bsz*a.Features)
	}
	target := make([]float64, bsz)
	dy := make([]float64, bsz)
	for b.Loop() {
		n.zeroGrad()
		out := n.forward(xs, bsz, true)
		lossGrad(lossBCE, out, target, nil, dy, 1, bsz)
		n.backward(dy, bsz)
	}
}
