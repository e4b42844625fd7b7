package lstm

import (
	"gonum.org/v1/gonum/blas/blas32"
)

// fast is float32 inference of one sequence at a time (the live verdict):
// the two LSTM layers run step by step, interleaved, keeping only the
// current states; activations use a rational tanh (no exponential). Its
// scores agree with the float64 network's to about 1e-5 (tested); training
// and batch scoring stay in float64.
type fast struct {
	l1, l2     rec32
	d1, d2, d3 dense32
	x          []float32
}

type rec32 struct {
	in, h      int
	w, u, b    []float32
	z, c, hcur []float32
	hprev      []float32
}

type dense32 struct {
	in, out int
	relu    bool
	w, b, y []float32
}

func to32(s []float64) []float32 {
	out := make([]float32, len(s))
	for i, v := range s {
		out[i] = float32(v)
	}
	return out
}

func newFast(n *net) *fast {
	rec := func(l *recurrent) rec32 {
		return rec32{in: l.In, h: l.H, w: to32(l.W), u: to32(l.U), b: to32(l.B),
			z: make([]float32, 4*l.H), c: make([]float32, l.H), hcur: make([]float32, l.H), hprev: make([]float32, l.H)}
	}
	den := func(d *dense) dense32 {
		return dense32{in: d.In, out: d.Out, relu: d.Act == actReLU, w: to32(d.W), b: to32(d.B), y: make([]float32, d.Out)}
	}
	return &fast{l1: rec(n.l1), l2: rec(n.l2), d1: den(n.d1), d2: den(n.d2), d3: den(n.d3), x: make([]float32, n.arch.Features)}
}

var impl = blas32.Implementation()

// axpy adds a·x to y (len(x) == len(y)).
func axpy(a float32, x, y []float32) { impl.Saxpy(len(x), a, x, 1, y, 1) }

func (r *rec32) reset() {
	clear(r.c)
	clear(r.hcur)
}

// step advances the layer by one input and returns its new output.
func (r *rec32) step(x []float32) []float32 {
	H := r.h
	copy(r.z, r.b)
	for i, v := range x {
		if v != 0 {
			axpy(v, r.w[i*4*H:(i+1)*4*H], r.z)
		}
	}
	r.hprev, r.hcur = r.hcur, r.hprev
	for i, v := range r.hprev {
		if v != 0 {
			axpy(v, r.u[i*4*H:(i+1)*4*H], r.z)
		}
	}
	for j := 0; j < H; j++ {
		i, f, g, o := sigmoid32(r.z[j]), sigmoid32(r.z[H+j]), tanh32(r.z[2*H+j]), sigmoid32(r.z[3*H+j])
		c := f*r.c[j] + i*g
		r.c[j] = c
		r.hcur[j] = o * tanh32(c)
	}
	return r.hcur
}

func (d *dense32) forward(x []float32) []float32 {
	copy(d.y, d.b)
	for i, v := range x {
		if v != 0 {
			axpy(v, d.w[i*d.out:(i+1)*d.out], d.y)
		}
	}
	if d.relu {
		for i, v := range d.y {
			if v < 0 {
				d.y[i] = 0
			}
		}
	}
	return d.y
}

// forward maps one normalised sequence to the network's outputs.
func (f *fast) forward(xs [][]float64) []float32 {
	f.l1.reset()
	f.l2.reset()
	var h []float32
	for _, x := range xs {
		for i, v := range x {
			f.x[i] = float32(v)
		}
		h = f.l2.step(f.l1.step(f.x))
	}
	return f.d3.forward(f.d2.forward(f.d1.forward(h)))
}

// tanh32 is a rational approximation of tanh on [-9, 9] (clamped outside,
// where tanh is 1 to float32 precision): the odd polynomial of degree 13
// over the even one of degree 6 used by Eigen's fast tanh, accurate to a
// few float32 ulps.
func tanh32(x float32) float32 {
	const clamp = 7.90531110763549805
	if x > clamp {
		x = clamp
	} else if x < -clamp {
		x = -clamp
	}
	x2 := x * x
	p := x2*-2.76076847742355e-16 + 2.00018790482477e-13
	p = x2*p + -8.60467152213735e-11
	p = x2*p + 5.12229709037114e-08
	p = x2*p + 1.48572235717979e-05
	p = x2*p + 6.37261928875436e-04
	p = x2*p + 4.89352455891786e-03
	p = x * p
	q := x2*1.19825839466702e-06 + 1.18534705686654e-04
	q = x2*q + 2.26843463243900e-03
	q = x2*q + 4.89352518554385e-03
	return p / q
}

func sigmoid32(x float32) float32 { return 0.5 + 0.5*tanh32(0.5*x) }
