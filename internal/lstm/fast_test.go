package lstm

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestTanh32(t *testing.T) {
	worst := 0.0
	for x := -12.0; x <= 12; x += 0.0007 {
		if d := math.Abs(float64(tanh32(float32(x))) - math.Tanh(x)); d > worst {
			worst = d
		}
	}
	if worst > 2e-6 {
		t.Fatalf("tanh32 is off by up to %g", worst)
	}
	t.Logf("tanh32: max error %.2g over [-12, 12]", worst)
}

// TestFastAgrees: the float32 path gives the float64 network's outputs.
func TestFastAgrees(t *testing.T) {
	for _, out := range []int{1, 11} {
		n := newNet(PaperArch(11, 10, out), 3)
		f := newFast(n)
		r := rand.New(rand.NewPCG(2, 2))
		for trial := 0; trial < 20; trial++ {
			xs := make([][]float64, 10)
			for i := range xs {
				xs[i] = randSlice(r, 11)
			}
			want := n.forward(xs, 1, false)
			got := f.forward(xs)
			for i := range want {
				if d := math.Abs(float64(got[i]) - want[i]); d > 1e-4*math.Max(1, math.Abs(want[i])) {
					t.Fatalf("out %d: float32 %v, float64 %v", i, got[i], want[i])
				}
			}
		}
	}
}

func BenchmarkFastOne(b *testing.B) {
	n := newNet(PaperArch(11, 10, 1), 1)
	f := newFast(n)
	xs := make([][]float64, 10)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range xs {
		xs[i] = randSlice(r, 11)
	}
	b.ReportAllocs()
	for b.Loop() {
		f.forward(xs)
	}
}
