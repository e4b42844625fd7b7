package detect

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestGrubbsCritical(t *testing.T) {
	// Two-sided critical values at alpha = 0.05 from published tables.
	for n, want := range map[int]float64{10: 2.290, 20: 2.709, 50: 3.128, 100: 3.384} {
		if got := grubbsCritical(n, 0.05); math.Abs(got-want) > 0.005 {
			t.Errorf("n=%d: %.3f, want %.3f", n, got, want)
		}
	}
}

func TestGrubbsRemovesOutliers(t *testing.T) {
	x := []float64{9.8, 10.1, 10.0, 9.9, 10.2, 10.1, 9.7, 10.0, 30, 10.1, 9.9, -5}
	keep := make([]bool, len(x))
	grubbs(x, keep, 0.05)
	for i, v := range x {
		if outlier := v == 30 || v == -5; keep[i] == outlier {
			t.Errorf("value %v kept=%v", v, keep[i])
		}
	}
	// Constant data: nothing removed, no division by zero.
	c := []float64{3, 3, 3, 3}
	k := make([]bool, 4)
	grubbs(c, k, 0.05)
	for _, b := range k {
		if !b {
			t.Fatal("removed a value of constant data")
		}
	}
}

var names = []string{"syn", "ipentr", "ipcorr", "ttl", "portsrv", "porto", "packet", "portacc"}

func normal(r *rand.Rand) []float64 {
	return []float64{0.02 + 0.005*r.NormFloat64(), 4 + 0.1*r.NormFloat64(), 0.99 + 0.003*r.NormFloat64(), 1.5 + 0.05*r.NormFloat64(),
		1.6 + 0.05*r.NormFloat64(), 0.4 + 0.02*r.NormFloat64(), 3 + 0.1*r.NormFloat64(), 0.8 + 0.05*r.NormFloat64()}
}

func TestDetectsShiftsQuietOnNormal(t *testing.T) {
	for _, kind := range []Kind{Paper, Normalized} {
		r := rand.New(rand.NewPCG(5, 6))
		d := NewStability(names, Config{History: 120, Kind: kind})
		for i := 0; i < 120; i++ {
			if v := d.Observe(normal(r)); v.Ready {
				t.Fatal("verdict during warm-up")
			}
		}
		fp := 0
		for i := 0; i < 300; i++ {
			if d.Observe(normal(r)).Anomaly {
				fp++
			}
		}
		// A SYN flood: syn proportion up, port entropy down, IP entropy up.
		x := normal(r)
		x[0], x[1], x[4] = 0.6, 7.5, 0.2
		v := d.Observe(x)
		if !v.Anomaly || v.Top[0].Feature == "" {
			t.Errorf("kind %d: SYN flood window not flagged: %+v", kind, v)
		}
		if fp > 15 {
			t.Errorf("kind %d: %d false positives in 300 normal windows", kind, fp)
		}
		t.Logf("kind %d: %d/300 false positives; flood deviation %.3g vs threshold %.3g, top %s", kind, fp, v.Deviation, v.Threshold, v.Top[0].Feature)
	}
}

func TestDegenerateHistory(t *testing.T) {
	d := NewStability(names, Config{History: 10})
	zero := make([]float64, len(names))
	for i := 0; i < 10; i++ {
		d.Observe(zero)
	}
	v := d.Observe(zero)
	if !v.Ready || v.Anomaly || math.IsNaN(v.Deviation) || math.IsNaN(v.Threshold) {
		t.Fatalf("constant history, same window: %+v", v)
	}
	x := make([]float64, len(names))
	x[0] = 1
	v = d.Observe(x)
	if !v.Anomaly || math.IsInf(v.Deviation, 0) || v.Top[0].Feature != "syn" {
		t.Fatalf("constant history, changed window: %+v", v)
	}
}

// TestKScalesThreshold: the normalized threshold is mean + K sd of the
// history's deviations, so on the same history a larger K gives a larger
// threshold, and the default is DefaultK.
func TestKScalesThreshold(t *testing.T) {
	thr := func(k float64) float64 {
		r := rand.New(rand.NewPCG(9, 9))
		d := NewStability(names, Config{History: 120, Kind: Normalized, K: k})
		var v Verdict
		for i := 0; i < 121; i++ {
			v = d.Observe(normal(r))
		}
		return v.Threshold
	}
	t4, t8, t16, def := thr(4), thr(8), thr(16), thr(0)
	if !(t4 < t8 && t8 < t16) || def != t8 {
		t.Fatalf("thresholds K=4 %.4g, K=8 %.4g, K=16 %.4g, default %.4g", t4, t8, t16, def)
	}
	// Linear in K above the floor: t16 - t8 = 2 (t8 - t4).
	if d := (t16 - t8) - 2*(t8-t4); d > 1e-9*t16 || d < -1e-9*t16 {
		t.Fatalf("not mean + K sd: %.6g %.6g %.6g", t4, t8, t16)
	}
}
