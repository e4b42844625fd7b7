package lstm

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
)

// gemm computes c = op(a)·op(b) + beta·c for row-major a (m×k after op),
// b (k×n after op) and c (m×n).
func gemm(ta, tb bool, m, n, k int, a, b []float64, beta float64, c []float64) {
	if m == 0 || n == 0 {
		return
	}
	if !ta && !tb && m <= 4 {
		// Inference on one sequence: rows of b added in place (no
		// allocation, the axpy kernel is vectorised).
		for r := 0; r < m; r++ {
			cr := c[r*n : (r+1)*n]
			if beta != 1 {
				for i := range cr {
					cr[i] *= beta
				}
			}
			for i, av := range a[r*k : (r+1)*k] {
				if av != 0 {
					floats.AddScaled(cr, av, b[i*n:(i+1)*n])
				}
			}
		}
		return
	}
	A := blas64.General{Rows: m, Cols: k, Stride: k, Data: a}
	if ta {
		A = blas64.General{Rows: k, Cols: m, Stride: m, Data: a}
	}
	B := blas64.General{Rows: k, Cols: n, Stride: n, Data: b}
	if tb {
		B = blas64.General{Rows: n, Cols: k, Stride: k, Data: b}
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if ta {
		tA = blas.Trans
	}
	if tb {
		tB = blas.Trans
	}
	blas64.Gemm(tA, tB, 1, A, B, beta, blas64.General{Rows: m, Cols: n, Stride: n, Data: c})
}

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// param is one weight tensor with its gradient.
type param struct {
	w, g []float64
}

// glorot fills w (fanIn×fanOut) uniformly in ±sqrt(6/(fanIn+fanOut)).
func glorot(r *rand.Rand, w []float64, fanIn, fanOut int) {
	lim := math.Sqrt(6 / float64(fanIn+fanOut))
	for i := range w {
		w[i] = (2*r.Float64() - 1) * lim
	}
}

// breakBPTT is for tests only: it drops the hidden and cell-state
// gradients carried back through time, so that a test can show that it
// notices a broken backward pass.
var breakBPTT bool

// recurrent is an LSTM layer (Hochreiter & Schmidhuber, with forget gate):
//
//	z_t = x_t·W + h_{t-1}·U + b    gates in blocks [i f g o] of H columns
//	i, f, o = sigmoid, g = tanh
//	c_t = f⊙c_{t-1} + i⊙g,  h_t = o⊙tanh(c_t)
//
// with h_0 = c_0 = 0. Weights are shared between the copies of a layer
// (one per worker); gradients, and the activations kept for the backward
// pass, belong to the copy.
type recurrent struct {
	In, H      int
	W, U, B    []float64 // In×4H, H×4H, 4H
	dW, dU, dB []float64
	// per step t (B rows each): the gates after activation, c_t, tanh(c_t),
	// and the input and h_{t-1} the step saw
	gates, c, tc, x, hPrev [][]float64
	h                      [][]float64 // outputs
	dz, dh, dc, dcNext     []float64   // scratch
}

func newRecurrent(in, h int, r *rand.Rand) *recurrent {
	l := &recurrent{In: in, H: h, W: make([]float64, in*4*h), U: make([]float64, h*4*h), B: make([]float64, 4*h)}
	glorot(r, l.W, in, 4*h)
	glorot(r, l.U, h, 4*h)
	for j := h; j < 2*h; j++ {
		l.B[j] = 1 // forget gate bias 1: remember by default (Jozefowicz et al. 2015)
	}
	return l
}

// copyShared returns a copy sharing the weights, with its own gradients.
func (l *recurrent) copyShared() *recurrent {
	return &recurrent{In: l.In, H: l.H, W: l.W, U: l.U, B: l.B}
}

func (l *recurrent) params() []param {
	if l.dW == nil {
		l.dW, l.dU, l.dB = make([]float64, len(l.W)), make([]float64, len(l.U)), make([]float64, len(l.B))
	}
	return []param{{l.W, l.dW}, {l.U, l.dU}, {l.B, l.dB}}
}

func grow(s [][]float64, t, n int) [][]float64 {
	for len(s) < t {
		s = append(s, nil)
	}
	for i := 0; i < t; i++ {
		if cap(s[i]) < n {
			s[i] = make([]float64, n)
		}
		s[i] = s[i][:n]
	}
	return s[:t]
}

// forward runs the layer over xs (T steps of bsz×In) and returns the T
// outputs (bsz×H each; valid until the next forward).
func (l *recurrent) forward(xs [][]float64, bsz int) [][]float64 {
	T, H := len(xs), l.H
	l.gates = grow(l.gates, T, bsz*4*H)
	l.c = grow(l.c, T, bsz*H)
	l.tc = grow(l.tc, T, bsz*H)
	l.h = grow(l.h, T, bsz*H)
	l.hPrev = grow(l.hPrev, T, bsz*H)
	l.x = l.x[:0]
	for t := 0; t < T; t++ {
		l.x = append(l.x, xs[t])
		z := l.gates[t]
		for r := 0; r < bsz; r++ {
			copy(z[r*4*H:(r+1)*4*H], l.B)
		}
		gemm(false, false, bsz, 4*H, l.In, xs[t], l.W, 1, z)
		hp := l.hPrev[t]
		if t == 0 {
			clear(hp)
		} else {
			copy(hp, l.h[t-1])
			gemm(false, false, bsz, 4*H, H, hp, l.U, 1, z)
		}
		c, tc, h := l.c[t], l.tc[t], l.h[t]
		for r := 0; r < bsz; r++ {
			zr := z[r*4*H : (r+1)*4*H]
			for j := 0; j < H; j++ {
				i := sigmoid(zr[j])
				f := sigmoid(zr[H+j])
				g := math.Tanh(zr[2*H+j])
				o := sigmoid(zr[3*H+j])
				zr[j], zr[H+j], zr[2*H+j], zr[3*H+j] = i, f, g, o
				cp := 0.0
				if t > 0 {
					cp = l.c[t-1][r*H+j]
				}
				cv := f*cp + i*g
				c[r*H+j] = cv
				tc[r*H+j] = math.Tanh(cv)
				h[r*H+j] = o * tc[r*H+j]
			}
		}
	}
	return l.h
}

// backward takes the loss gradient of every output (dhs[t] may be nil:
// no gradient at that step), adds the weight gradients and returns the
// input gradients in dxs (T of bsz×In, allocated if nil).
func (l *recurrent) backward(dhs [][]float64, bsz int, dxs [][]float64) [][]float64 {
	T, H := len(l.x), l.H
	dxs = grow(dxs, T, bsz*l.In)
	if cap(l.dz) < bsz*4*H {
		l.dz = make([]float64, bsz*4*H)
		l.dh = make([]float64, bsz*H)
		l.dc = make([]float64, bsz*H)
		l.dcNext = make([]float64, bsz*H)
	}
	dz, dh, dc, dcNext := l.dz[:bsz*4*H], l.dh[:bsz*H], l.dc[:bsz*H], l.dcNext[:bsz*H]
	clear(dh)
	clear(dcNext)
	for t := T - 1; t >= 0; t-- {
		if dhs[t] != nil {
			for i, v := range dhs[t] {
				dh[i] += v
			}
		}
		g := l.gates[t]
		for r := 0; r < bsz; r++ {
			gr, dzr := g[r*4*H:(r+1)*4*H], dz[r*4*H:(r+1)*4*H]
			for j := 0; j < H; j++ {
				k := r*H + j
				i, f, gg, o := gr[j], gr[H+j], gr[2*H+j], gr[3*H+j]
				tc := l.tc[t][k]
				do := dh[k] * tc
				dcv := dh[k]*o*(1-tc*tc) + dcNext[k]
				cp := 0.0
				if t > 0 {
					cp = l.c[t-1][k]
				}
				dzr[j] = dcv * gg * i * (1 - i)
				dzr[H+j] = dcv * cp * f * (1 - f)
				dzr[2*H+j] = dcv * i * (1 - gg*gg)
				dzr[3*H+j] = do * o * (1 - o)
				dc[k] = dcv * f
			}
		}
		dc, dcNext = dcNext, dc
		gemm(true, false, l.In, 4*H, bsz, l.x[t], dz, 1, l.dW)
		gemm(false, true, bsz, l.In, 4*H, dz, l.W, 0, dxs[t])
		if t > 0 {
			gemm(true, false, H, 4*H, bsz, l.hPrev[t], dz, 1, l.dU)
			gemm(false, true, bsz, H, 4*H, dz, l.U, 0, dh)
		} else {
			clear(dh)
		}
		if breakBPTT {
			clear(dh)
			clear(dcNext)
		}
		for r := 0; r < bsz; r++ {
			for j, v := range dz[r*4*H : (r+1)*4*H] {
				l.dB[j] += v
			}
		}
	}
	l.dc, l.dcNext = dc, dcNext
	return dxs
}

// Activations of a dense layer.
const (
	actLinear = iota
	actReLU
)

// dense is a fully connected layer y = act(x·W + b).
type dense struct {
	In, Out int
	Act     int
	W, B    []float64 // In×Out, Out
	dW, dB  []float64
	x, y    []float64 // kept for backward (x is the caller's)
	dx      []float64
}

func newDense(in, out, act int, r *rand.Rand) *dense {
	d := &dense{In: in, Out: out, Act: act, W: make([]float64, in*out), B: make([]float64, out)}
	glorot(r, d.W, in, out)
	return d
}

func (d *dense) copyShared() *dense {
	return &dense{In: d.In, Out: d.Out, Act: d.Act, W: d.W, B: d.B}
}

func (d *dense) params() []param {
	if d.dW == nil {
		d.dW, d.dB = make([]float64, len(d.W)), make([]float64, len(d.B))
	}
	return []param{{d.W, d.dW}, {d.B, d.dB}}
}

func (d *dense) forward(x []float64, bsz int) []float64 {
	d.x = x
	if cap(d.y) < bsz*d.Out {
		d.y = make([]float64, bsz*d.Out)
	}
	y := d.y[:bsz*d.Out]
	for r := 0; r < bsz; r++ {
		copy(y[r*d.Out:(r+1)*d.Out], d.B)
	}
	gemm(false, false, bsz, d.Out, d.In, x, d.W, 1, y)
	if d.Act == actReLU {
		for i, v := range y {
			if v < 0 {
				y[i] = 0
			}
		}
	}
	d.y = y
	return y
}

// backward turns dy (modified in place) into dx, adding the weight
// gradients.
func (d *dense) backward(dy []float64, bsz int) []float64 {
	if d.Act == actReLU {
		for i, v := range d.y {
			if v <= 0 {
				dy[i] = 0
			}
		}
	}
	gemm(true, false, d.In, d.Out, bsz, d.x, dy, 1, d.dW)
	for r := 0; r < bsz; r++ {
		for j, v := range dy[r*d.Out : (r+1)*d.Out] {
			d.dB[j] += v
		}
	}
	if cap(d.dx) < bsz*d.In {
		d.dx = make([]float64, bsz*d.In)
	}
	dx := d.dx[:bsz*d.In]
	gemm(false, true, bsz, d.In, d.Out, dy, d.W, 0, dx)
	return dx
}

// dropout zeroes each value with probability P while training and scales
// the rest by 1/(1-P) (inverted dropout); at inference it is the identity.
type dropout struct {
	P    float64
	mask []float64
	y    []float64
}

func (d *dropout) forward(x []float64, train bool, r *rand.Rand) []float64 {
	if !train || d.P <= 0 {
		d.mask = d.mask[:0]
		return x
	}
	if cap(d.mask) < len(x) {
		d.mask, d.y = make([]float64, len(x)), make([]float64, len(x))
	}
	d.mask, d.y = d.mask[:len(x)], d.y[:len(x)]
	keep := 1 / (1 - d.P)
	for i, v := range x {
		m := 0.0
		if r.Float64() >= d.P {
			m = keep
		}
		d.mask[i] = m
		d.y[i] = v * m
	}
	return d.y
}

func (d *dropout) backward(dy []float64) []float64 {
	if len(d.mask) == 0 {
		return dy
	}
	for i := range dy {
		dy[i] *= d.mask[i]
	}
	return dy
}
