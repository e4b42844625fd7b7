package lstm

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Arch is the shape of a network: the paper's LSTM-NAD is
// <B, T, F> -> LSTM 64 (every step) -> LSTM 32 (last step) -> Dense 64 ->
// Dense 32 -> Dense Out, with ReLU on the two hidden dense layers and
// dropout after each of them.
type Arch struct {
	Features int     `json:"features"` // F
	Seq      int     `json:"seq"`      // T
	LSTM1    int     `json:"lstm1"`
	LSTM2    int     `json:"lstm2"`
	Dense1   int     `json:"dense1"`
	Dense2   int     `json:"dense2"`
	Out      int     `json:"out"` // 1 (a logit) or F (a forecast)
	Dropout  float64 `json:"dropout"`
}

// PaperArch is LSTM-NAD's shape for f features, t steps and out outputs.
func PaperArch(f, t, out int) Arch {
	return Arch{Features: f, Seq: t, LSTM1: 64, LSTM2: 32, Dense1: 64, Dense2: 32, Out: out, Dropout: 0.2}
}

// maxUnits bounds every size a model file may ask for.
const maxUnits = 4096

func (a Arch) validate() error {
	for _, v := range []struct {
		name string
		n    int
	}{{"features", a.Features}, {"seq", a.Seq}, {"lstm1", a.LSTM1}, {"lstm2", a.LSTM2}, {"dense1", a.Dense1}, {"dense2", a.Dense2}, {"out", a.Out}} {
		if v.n < 1 || v.n > maxUnits {
			return fmt.Errorf("arch: %s = %d, want 1..%d", v.name, v.n, maxUnits)
		}
	}
	if !(a.Dropout >= 0 && a.Dropout < 1) {
		return fmt.Errorf("arch: dropout %v, want [0, 1)", a.Dropout)
	}
	return nil
}

// net is one copy of the network: the weights are shared by all copies,
// activations and gradients are each copy's own.
type net struct {
	arch         Arch
	l1, l2       *recurrent
	d1, d2, d3   *dense
	drop1, drop2 dropout
	dlast        [][]float64 // gradient into l2's steps: nil but the last
	rng          *rand.Rand  // dropout
}

func newNet(a Arch, seed uint64) *net {
	r := rand.New(rand.NewPCG(seed, 0x15f3))
	return &net{arch: a,
		l1: newRecurrent(a.Features, a.LSTM1, r), l2: newRecurrent(a.LSTM1, a.LSTM2, r),
		d1: newDense(a.LSTM2, a.Dense1, actReLU, r), d2: newDense(a.Dense1, a.Dense2, actReLU, r),
		d3:    newDense(a.Dense2, a.Out, actLinear, r),
		drop1: dropout{P: a.Dropout}, drop2: dropout{P: a.Dropout},
		rng: rand.New(rand.NewPCG(seed, 0xd50)),
	}
}

// copyShared returns a copy of n that shares its weights.
func (n *net) copyShared(seed uint64) *net {
	c := &net{arch: n.arch, l1: n.l1.copyShared(), l2: n.l2.copyShared(),
		d1: n.d1.copyShared(), d2: n.d2.copyShared(), d3: n.d3.copyShared(),
		drop1: dropout{P: n.drop1.P}, drop2: dropout{P: n.drop2.P},
		rng: rand.New(rand.NewPCG(seed, 0xd50))}
	c.params()
	return c
}

// params lists the weights in a fixed order (the order of model files).
func (n *net) params() []param {
	var ps []param
	ps = append(ps, n.l1.params()...)
	ps = append(ps, n.l2.params()...)
	ps = append(ps, n.d1.params()...)
	ps = append(ps, n.d2.params()...)
	ps = append(ps, n.d3.params()...)
	return ps
}

func (n *net) zeroGrad() {
	for _, p := range n.params() {
		clear(p.g)
	}
}

// forward maps xs (T steps of bsz×F) to bsz×Out outputs.
func (n *net) forward(xs [][]float64, bsz int, train bool) []float64 {
	h1 := n.l1.forward(xs, bsz)
	h2 := n.l2.forward(h1, bsz)
	y := n.d1.forward(h2[len(h2)-1], bsz)
	y = n.drop1.forward(y, train, n.rng)
	y = n.d2.forward(y, bsz)
	y = n.drop2.forward(y, train, n.rng)
	return n.d3.forward(y, bsz)
}

// backward takes dL/d(outputs) (modified) and adds every weight gradient.
func (n *net) backward(dy []float64, bsz int) {
	d := n.d3.backward(dy, bsz)
	d = n.drop2.backward(d)
	d = n.d2.backward(d, bsz)
	d = n.drop1.backward(d)
	d = n.d1.backward(d, bsz)
	T := n.arch.Seq
	if len(n.dlast) != T {
		n.dlast = make([][]float64, T)
	}
	n.dlast[T-1] = d
	dx := n.l2.backward(n.dlast, bsz, nil)
	n.l1.backward(dx, bsz, nil)
}

// Loss kinds.
const (
	lossBCE = iota // Out = 1 logit, target 0/1: binary cross-entropy of sigmoid(logit)
	lossMSE        // Out = F, target a vector: mean squared error
)

// lossGrad returns the summed, weighted per-sample loss of a shard
// (outputs of width values per sample; weight nil = 1 each) and writes
// into dy the gradient of the batch's mean loss, total being the whole
// batch's size.
func lossGrad(kind int, out, target, weight, dy []float64, width, total int) float64 {
	loss := 0.0
	for i, z := range out {
		w := 1.0
		if weight != nil {
			w = weight[i/width]
		}
		switch kind {
		case lossBCE:
			y := target[i]
			// softplus(z) - y·z, computed without overflow
			loss += w * (math.Max(z, 0) - z*y + math.Log1p(math.Exp(-math.Abs(z))))
			dy[i] = w * (sigmoid(z) - y) / float64(total)
		case lossMSE:
			e := z - target[i]
			loss += w * e * e / float64(width)
			dy[i] = w * 2 * e / float64(width*total)
		}
	}
	return loss
}
