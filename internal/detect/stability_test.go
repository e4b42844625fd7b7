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
	// K well above the floor (the sum of the weights) on this history.
	t4, t8, t16, def := thr(12), thr(24), thr(48), thr(0)
	if !(t4 < t8 && t8 < t16) || def != thr(DefaultK) {
		t.Fatalf("thresholds K=12 %.4g, K=24 %.4g, K=48 %.4g, default %.4g", t4, t8, t16, def)
	}
	// Linear in K above the floor: t16 - t8 = 2 (t8 - t4).
	if d := (t16 - t8) - 2*(t8-t4); d > 1e-9*t16 || d < -1e-9*t16 {
		t.Fatalf("not mean + K sd: %.6g %.6g %.6g", t4, t8, t16)
	}
}

// TestConstantHistoryBounded reproduces the 1e9 of issue 19: a feature
// whose history is exactly 0 (portacc on a quiet service) once scored any
// non-zero value as ~1e9 deviations. Now each term is at most ZMax².
func TestConstantHistoryBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	d := NewStability(names, Config{History: 60, Kind: Normalized})
	for i := 0; i < 60; i++ {
		x := normal(r)
		x[7] = 0 // portacc: constant 0
		d.Observe(x)
	}
	x := normal(r)
	x[7] = 0.5 // one client reached a second port
	v := d.Observe(x)
	if v.Deviation > ZMax*ZMax*float64(len(names)) || v.Top[0].Value > ZMax*ZMax {
		t.Fatalf("unbounded: %+v", v)
	}
	// one feature alone, however far off, cannot exceed ZMax²
	x[7] = 1e6
	if v := d.Observe(x); v.Top[0].Feature != "portacc" || v.Top[0].Value != ZMax*ZMax {
		t.Fatalf("far-off feature: %+v", v.Top)
	}
}

// TestLearnsNewNormal reproduces the lock-out of issue 19: a lasting change
// (here, a second TTL appearing for good) was alarmed forever because
// alarmed windows never entered the history. Now alarms stop once the
// change fills the history's median, and the Paper kind keeps its rule.
func TestLearnsNewNormal(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	const n = 60
	d := NewStability(names, Config{History: n, Kind: Normalized})
	for i := 0; i < n; i++ {
		d.Observe(normal(r))
	}
	last := -1
	for i := 0; i < 8*n; i++ {
		x := normal(r)
		x[3] += 1.5 // ttl entropy up for good: 15 spreads
		if d.Observe(x).Anomaly {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("the change itself was never alarmed")
	}
	// each N/2 windows move the median by up to ClipZ spreads: 15 spreads
	// take about 5 of them
	if last > 5*n {
		t.Fatalf("still alarming %d windows after a lasting change (history %d)", last, n)
	}
	t.Logf("last alarm %d windows after the change (history %d)", last, n)
	// One burst does not poison the profile: after 10 attack windows the
	// old normal is still normal and the attack still alarms.
	d = NewStability(names, Config{History: n, Kind: Normalized})
	for i := 0; i < n; i++ {
		d.Observe(normal(r))
	}
	flood := func() []float64 { x := normal(r); x[0], x[1], x[4] = 0.6, 7.5, 0.2; return x }
	for i := 0; i < 10; i++ {
		d.Observe(flood())
	}
	if !d.Observe(flood()).Anomaly {
		t.Fatal("10 attack windows made the attack normal")
	}
	fp := 0
	for i := 0; i < 20; i++ {
		if d.Observe(normal(r)).Anomaly {
			fp++
		}
	}
	if fp > 1 {
		t.Fatalf("%d of 20 normal windows alarmed after a burst", fp)
	}
}
