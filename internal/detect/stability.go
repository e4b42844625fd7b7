package detect

import (
	"math"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// Kind selects the per-feature term.
type Kind int

// Detector kinds.
const (
	Paper      Kind = iota // eq. 4 as printed
	Normalized             // scale-free variant
)

// Config configures a Stability detector.
type Config struct {
	History int     // N, default 120
	Alpha   float64 // Grubbs significance, default 0.05
	Kind    Kind
	// LearnAlarms lets every window into the history. By default a window
	// whose deviation exceeds twice the threshold stays out, so that an
	// attack cannot become the normal profile (the paper leaves this to
	// Grubbs' test alone); milder alarms are learned, so that the profile
	// does not narrow itself on benign variation.
	LearnAlarms bool
	// K (Normalized): the threshold is the mean of the history's normal
	// deviations plus K standard deviations; default DefaultK.
	K float64
	// Resolution (Normalized): per feature, the smallest change worth one
	// unit of deviation: the floor of its spread (default 0.1 each).
	Resolution []float64
}

// DefaultK is the normalized detector's threshold in robust spreads of
// the history's unalarmed deviations. Chosen on the varied lab's tuning
// capture (lab traffic --seed 41, docs/nad-lstm.md) as the largest K that
// loses at most one episode found at K = 8, at 1 s and at 10 s windows
// (K = 12 loses two at 10 s); the report capture (seed 42) was not used.
const DefaultK = 8

// keepOutFactor (Paper): windows with deviation > keepOutFactor *
// threshold are not learned (unless LearnAlarms).
const keepOutFactor = 2

// Normalized scores: a feature's term is its distance from the history's
// median in units of its spread, capped at ZMax, squared; an alarmed window is
// learned with each feature clipped to within ClipZ spreads of the median.
const (
	ZMax  = 10
	ClipZ = 3
)

// defaultResolution is a feature's spread floor when Config.Resolution
// does not name one: a tenth of a bit of entropy, a tenth of the range of
// a rate or correlation.
const defaultResolution = 0.1

// Contribution is one feature's share of a deviation.
type Contribution struct {
	Feature string  `json:"feature"`
	Value   float64 `json:"value"`   // its term of the deviation
	Current float64 `json:"current"` // fc(x)
	Base    float64 `json:"base"`    // fb(x) (Paper) or the history mean (Normalized)
}

// Verdict is the judgement of one window.
type Verdict struct {
	Ready     bool           `json:"ready"` // false during warm-up
	Anomaly   bool           `json:"anomaly"`
	Deviation float64        `json:"deviation"`
	Threshold float64        `json:"threshold"`
	Top       []Contribution `json:"top,omitempty"` // largest first
}

// Stability is the traffic-structure-stability detector of one server.
type Stability struct {
	cfg   Config
	names []string
	hist  [][]float64 // ring of the last N vectors
	// alarmed marks the ring's windows that were alarmed when observed
	// (Normalized: they shape the profile, winsorized, not the threshold)
	alarmed []bool
	next    int
	full    bool
	last    profile // the profile of the last verdict
	// scratch
	col  []float64
	keep []bool
}

// NewStability returns a detector over vectors of len(names) features.
func NewStability(names []string, cfg Config) *Stability {
	if cfg.History <= 2 {
		cfg.History = 120
	}
	if cfg.Alpha <= 0 || cfg.Alpha >= 1 {
		cfg.Alpha = 0.05
	}
	if cfg.K <= 0 {
		cfg.K = DefaultK
	}
	res := make([]float64, len(names))
	for j := range res {
		res[j] = defaultResolution
		if j < len(cfg.Resolution) && cfg.Resolution[j] > 0 {
			res[j] = cfg.Resolution[j]
		}
	}
	cfg.Resolution = res
	s := &Stability{cfg: cfg, names: names, hist: make([][]float64, cfg.History), alarmed: make([]bool, cfg.History)}
	for i := range s.hist {
		s.hist[i] = make([]float64, len(names))
	}
	return s
}

// profile is the normal profile of each feature.
type profile struct {
	fb, mean, sd, w []float64
	med, spread     []float64 // Normalized: median and robust spread
}

func (s *Stability) buildProfile() profile {
	f := len(s.names)
	p := profile{fb: make([]float64, f), mean: make([]float64, f), sd: make([]float64, f), w: make([]float64, f)}
	if s.cfg.Kind == Normalized {
		s.robustProfile(&p)
		return p
	}
	cv := make([]float64, f)
	n := len(s.hist)
	if cap(s.col) < n {
		s.col, s.keep = make([]float64, n), make([]bool, n)
	}
	col, keep := s.col[:n], s.keep[:n]
	sumCV := 0.0
	for j := 0; j < f; j++ {
		for i := range s.hist {
			col[i] = s.hist[i][j]
		}
		grubbs(col, keep, s.cfg.Alpha)
		var sum, sq float64
		k := 0
		for i, x := range col {
			if keep[i] {
				sum += x
				k++
			}
		}
		mu := sum / float64(k)
		for i, x := range col {
			if keep[i] {
				sq += (x - mu) * (x - mu)
			}
		}
		sd := 0.0
		if k > 1 {
			sd = math.Sqrt(sq / float64(k-1))
		}
		p.fb[j] = sum / float64(k+1) // eq. 1 as printed
		p.mean[j], p.sd[j] = mu, sd
		if math.Abs(mu) > 1e-12 {
			cv[j] = sd / math.Abs(mu)
		}
		sumCV += cv[j]
	}
	for j := range cv {
		if sumCV == 0 {
			p.w[j] = 1
			continue
		}
		c := cv[j]
		if c == 0 {
			c = 1e-3 * sumCV / float64(f)
		}
		p.w[j] = -math.Log(c / sumCV)
	}
	return p
}

// robustProfile fills the median and spread of every feature: the spread
// is 1.4826 MAD (the sd of a normal sample), else the 10-90 % range / 2.563
// when more than half the values are equal, and never below the feature's
// resolution or 5 % of the median's magnitude. Weights are equal: the
// spread already gives a stable feature its due, while the paper's cv
// weights gave a constant feature the largest weight of all.
func (s *Stability) robustProfile(p *profile) {
	f := len(s.names)
	p.med, p.spread = make([]float64, f), make([]float64, f)
	n := len(s.hist)
	if cap(s.col) < n {
		s.col, s.keep = make([]float64, n), make([]bool, n)
	}
	col := s.col[:n]
	for j := 0; j < f; j++ {
		for i := range s.hist {
			col[i] = s.hist[i][j]
		}
		sort.Float64s(col)
		med := quantile(col, 0.5)
		q10, q90 := quantile(col, 0.1), quantile(col, 0.9)
		for i := range col {
			col[i] = math.Abs(col[i] - med)
		}
		sort.Float64s(col)
		sp := 1.4826 * quantile(col, 0.5)
		if sp == 0 {
			sp = (q90 - q10) / 2.563
		}
		sp = max(sp, s.cfg.Resolution[j], 0.05*math.Abs(med))
		p.med[j], p.spread[j], p.mean[j], p.w[j] = med, sp, med, 1
	}
}

// quantile of sorted x at q, interpolated.
func quantile(x []float64, q float64) float64 {
	pos := q * float64(len(x)-1)
	i := int(pos)
	if i+1 >= len(x) {
		return x[len(x)-1]
	}
	return x[i] + (pos-float64(i))*(x[i+1]-x[i])
}

func (s *Stability) term(p *profile, j int, x float64) float64 {
	if s.cfg.Kind == Normalized {
		z := min(math.Abs(x-p.med[j])/p.spread[j], ZMax)
		return p.w[j] * z * z
	}
	return p.w[j] * math.Abs(p.fb[j]*p.fb[j]-x*x)
}

func (s *Stability) deviation(p *profile, x []float64) float64 {
	d := 0.0
	for j := range x {
		d += s.term(p, j, x[j])
	}
	return d
}

// Observe judges x against the history, then adds it to the history.
func (s *Stability) Observe(x []float64) Verdict {
	var v Verdict
	if s.full {
		p := s.buildProfile()
		s.last = p
		v.Ready = true
		v.Deviation = s.deviation(&p, x)
		v.Threshold = s.threshold(&p)
		v.Anomaly = v.Deviation > v.Threshold
		for j := range x {
			base := p.fb[j]
			if s.cfg.Kind == Normalized {
				base = p.mean[j]
			}
			v.Top = append(v.Top, Contribution{Feature: s.names[j], Value: s.term(&p, j, x[j]), Current: x[j], Base: base})
		}
		sort.SliceStable(v.Top, func(a, b int) bool { return v.Top[a].Value > v.Top[b].Value })
		v.Top = v.Top[:min(3, len(v.Top))]
	}
	if v.Anomaly && !s.cfg.LearnAlarms && s.cfg.Kind == Paper && v.Deviation > keepOutFactor*v.Threshold {
		return v
	}
	copy(s.hist[s.next], x)
	s.alarmed[s.next] = v.Anomaly
	if v.Anomaly && !s.cfg.LearnAlarms && s.cfg.Kind == Normalized {
		// Learned, but winsorized: an attack moves the profile by a
		// bounded step, a lasting change becomes normal once it fills
		// half the history.
		h := s.hist[s.next]
		for j := range h {
			lo, hi := s.last.med[j]-ClipZ*s.last.spread[j], s.last.med[j]+ClipZ*s.last.spread[j]
			h[j] = min(max(h[j], lo), hi)
		}
	}
	s.next = (s.next + 1) % len(s.hist)
	if s.next == 0 {
		s.full = true
	}
	return v
}

// threshold splits the history's deviations into normal and outliers.
func (s *Stability) threshold(p *profile) float64 {
	if s.cfg.Kind == Normalized {
		return s.robustThreshold(p)
	}
	devs := make([]float64, len(s.hist))
	for i, h := range s.hist {
		devs[i] = s.deviation(p, h)
	}
	keep := make([]bool, len(devs))
	grubbs(devs, keep, s.cfg.Alpha)
	var ns, os, nn, on float64
	for i, d := range devs {
		if keep[i] {
			ns += d
			nn++
		} else {
			os += d
			on++
		}
	}
	mn := ns / nn
	if on > 0 && s.cfg.Kind == Paper {
		return (mn + os/on) / 2
	}
	var sq float64
	for i, d := range devs {
		if keep[i] {
			sq += (d - mn) * (d - mn)
		}
	}
	sd := 0.0
	if nn > 1 {
		sd = math.Sqrt(sq / (nn - 1))
	}
	if s.cfg.Kind == Normalized {
		// Floor: the sum of the weights, i.e. every feature off by one unit
		// of its spread on average. Without it a perfectly regular history
		// would alarm on any change at all.
		floor := 0.0
		for _, w := range p.w {
			floor += w
		}
		return max(mn+s.cfg.K*sd, floor)
	}
	return mn + 3*sd + 1e-12
}

// robustThreshold (Normalized) is the median deviation of the history's
// windows that were not alarmed, plus K times their robust spread (1.4826
// MAD, at least 5 % of the median), and at least the sum of the weights.
// Alarmed windows are left out so that attacks in the history do not
// raise the bar for the next one; when every window was alarmed (a lasting
// change being learned), all count.
func (s *Stability) robustThreshold(p *profile) float64 {
	devs := make([]float64, 0, len(s.hist))
	for i, h := range s.hist {
		if !s.alarmed[i] {
			devs = append(devs, s.deviation(p, h))
		}
	}
	if len(devs) < 3 {
		devs = devs[:0]
		for _, h := range s.hist {
			devs = append(devs, s.deviation(p, h))
		}
	}
	sort.Float64s(devs)
	med := quantile(devs, 0.5)
	for i := range devs {
		devs[i] = math.Abs(devs[i] - med)
	}
	sort.Float64s(devs)
	spread := max(1.4826*quantile(devs, 0.5), 0.05*med)
	floor := 0.0
	for _, w := range p.w {
		floor += w
	}
	return max(med+s.cfg.K*spread, floor)
}

// grubbs marks in keep the values that survive repeated two-sided Grubbs
// tests at significance alpha (at most half are removed).
func grubbs(x []float64, keep []bool, alpha float64) {
	for i := range keep {
		keep[i] = true
	}
	n := len(x)
	for removed := 0; removed < len(x)/2 && n > 2; removed++ {
		var sum float64
		for i, v := range x {
			if keep[i] {
				sum += v
			}
		}
		mean := sum / float64(n)
		var sq float64
		for i, v := range x {
			if keep[i] {
				sq += (v - mean) * (v - mean)
			}
		}
		sd := math.Sqrt(sq / float64(n-1))
		if sd < 1e-12 {
			return
		}
		worst, g := -1, 0.0
		for i, v := range x {
			if keep[i] {
				if d := math.Abs(v-mean) / sd; d > g {
					worst, g = i, d
				}
			}
		}
		if g <= grubbsCritical(n, alpha) {
			return
		}
		keep[worst] = false
		n--
	}
}

// grubbsCritical is G_crit = (n-1)/sqrt(n) * sqrt(t^2 / (n-2+t^2)),
// t the upper alpha/(2n) quantile of Student's t with n-2 degrees of freedom.
func grubbsCritical(n int, alpha float64) float64 {
	fn := float64(n)
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: fn - 2}.Quantile(1 - alpha/(2*fn))
	return (fn - 1) / math.Sqrt(fn) * math.Sqrt(t*t/(fn-2+t*t))
}
