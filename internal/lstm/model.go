package lstm

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"time"
)

// Model is a trained network with everything needed to score a series:
// the normalisation fitted on its training windows, the feature list and
// window length it was trained for, and its operating threshold.
type Model struct {
	Kind     Kind          `json:"kind"`
	Arch     Arch          `json:"arch"`
	Features []string      `json:"features"` // names, in vector order (set by the caller)
	Window   time.Duration `json:"window"`   // the feature window it was trained on (set by the caller)
	// Normalisation: z = (slog(x) - Mean) / Scale per feature, with
	// slog(x) = sign(x)·ln(1+|x|) (counts and rates span decades).
	Mean      []float64 `json:"mean"`
	Scale     []float64 `json:"scale"`
	Threshold float64   `json:"threshold"` // a score above it is an anomaly
	Seed      uint64    `json:"seed"`
	Epoch     int       `json:"epoch"`    // the epoch kept (best validation loss)
	ValLoss   float64   `json:"val_loss"` // its validation loss
	net       *net
}

func slog(x float64) float64 {
	if x < 0 {
		return -math.Log1p(-x)
	}
	return math.Log1p(x)
}

func (m *Model) fitNorm(x [][]float64) {
	F := m.Arch.Features
	m.Mean, m.Scale = make([]float64, F), make([]float64, F)
	for j := 0; j < F; j++ {
		var s, sq float64
		for _, v := range x {
			s += slog(v[j])
		}
		mu := s / float64(len(x))
		for _, v := range x {
			d := slog(v[j]) - mu
			sq += d * d
		}
		sd := math.Sqrt(sq / float64(max(1, len(x)-1)))
		if sd < 1e-3 {
			sd = 1e-3 * math.Max(1, math.Abs(mu)) // constant in training: any change is large, not infinite
		}
		m.Mean[j], m.Scale[j] = mu, sd
	}
}

// zClip bounds a normalised value: a window 1000 sd off is as anomalous as
// one 50 sd off, and the network never saw either.
const zClip = 50

func (m *Model) normalizeInto(dst, v []float64) {
	for j, x := range v {
		z := (slog(x) - m.Mean[j]) / m.Scale[j]
		dst[j] = math.Max(-zClip, math.Min(zClip, z))
	}
}

func (m *Model) normalize(x [][]float64) [][]float64 {
	out := make([][]float64, len(x))
	for i, v := range x {
		out[i] = make([]float64, len(v))
		m.normalizeInto(out[i], v)
	}
	return out
}

// Need is how many consecutive windows one score needs: T for a
// classifier (it judges the last), T+1 for a forecaster (the last is the
// one forecast).
func (m *Model) Need() int {
	if m.Kind == Forecaster {
		return m.Arch.Seq + 1
	}
	return m.Arch.Seq
}

// Scorer scores sequences with m's weights, one at a time in float32
// (package doc); each goroutine needs its own.
type Scorer struct {
	m      *Model
	f      *fast
	xs     [][]float64
	tgt    []float64
	out    []float64 // the last Score's outputs
	scored bool
}

// Scorer returns a new scorer of m.
func (m *Model) Scorer() *Scorer {
	s := &Scorer{m: m, f: newFast(m.net), xs: make([][]float64, m.Arch.Seq), tgt: make([]float64, m.Arch.Features), out: make([]float64, m.Arch.Out)}
	for t := range s.xs {
		s.xs[t] = make([]float64, m.Arch.Features)
	}
	return s
}

// Score returns the anomaly score of the last window of seq (raw feature
// vectors, oldest first, len(seq) == m.Need()).
func (s *Scorer) Score(seq [][]float64) (float64, error) {
	if len(seq) != s.m.Need() {
		return 0, fmt.Errorf("score: %d windows, the model needs %d", len(seq), s.m.Need())
	}
	for t := 0; t < s.m.Arch.Seq; t++ {
		if len(seq[t]) != s.m.Arch.Features {
			return 0, fmt.Errorf("score: window has %d features, the model %d", len(seq[t]), s.m.Arch.Features)
		}
		s.m.normalizeInto(s.xs[t], seq[t])
	}
	for i, v := range s.f.forward(s.xs) {
		s.out[i] = float64(v)
	}
	if s.m.Kind == Forecaster {
		s.m.normalizeInto(s.tgt, seq[len(seq)-1])
	}
	s.scored = true
	return scoreOf(s.m.Kind, s.out, s.tgt), nil
}

// Forecast returns, after a forecaster's Score, the forecast of each
// feature in raw units and its share of the score (its squared error in
// normalised units over the feature count); nil for a classifier.
func (s *Scorer) Forecast() (forecast, share []float64) {
	if s.m.Kind != Forecaster || !s.scored {
		return nil, nil
	}
	F := s.m.Arch.Features
	forecast, share = make([]float64, F), make([]float64, F)
	for j := 0; j < F; j++ {
		e := s.out[j] - s.tgt[j]
		share[j] = e * e / float64(F)
		v := s.out[j]*s.m.Scale[j] + s.m.Mean[j] // slog units
		if v < 0 {
			forecast[j] = -math.Expm1(-v)
		} else {
			forecast[j] = math.Expm1(v)
		}
	}
	return forecast, share
}

// ScoreSeries scores every window of a series that has m.Need()-1
// windows before it (the others get NaN), as the live detector would.
func (m *Model) ScoreSeries(x [][]float64) ([]float64, error) {
	if err := checkSeries(x, m.Arch.Features); err != nil {
		return nil, fmt.Errorf("score: %w", err)
	}
	out := make([]float64, len(x))
	sc := m.Scorer()
	for i := range x {
		out[i] = math.NaN()
		if i >= m.Need()-1 {
			v, err := sc.Score(x[i-m.Need()+1 : i+1])
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
	}
	return out, nil
}

// The model file: magic, a little-endian uint32 header length, the JSON
// header (Model's fields), then each weight tensor as a uint32 count and
// that many little-endian float64s, in net.params order, and a CRC-32
// (IEEE) of everything before it.
const (
	magic   = "SECAASNN"
	version = 1
	// maxHeader bounds the header a file may claim.
	maxHeader = 1 << 20
)

type header struct {
	Version int `json:"version"`
	Model
}

// Save writes m to w.
func (m *Model) Save(w io.Writer) error {
	var buf bytes.Buffer
	buf.WriteString(magic)
	h, err := json.Marshal(header{Version: version, Model: *m})
	if err != nil {
		return err
	}
	binary.Write(&buf, binary.LittleEndian, uint32(len(h)))
	buf.Write(h)
	for _, p := range m.net.params() {
		binary.Write(&buf, binary.LittleEndian, uint32(len(p.w)))
		binary.Write(&buf, binary.LittleEndian, p.w)
	}
	binary.Write(&buf, binary.LittleEndian, crc32.ChecksumIEEE(buf.Bytes()))
	_, err = w.Write(buf.Bytes())
	return err
}

// SaveFile writes m to path (through a temporary file and a rename).
func (m *Model) SaveFile(path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := m.Save(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ErrCorrupt is wrapped by every error about a malformed model file.
var ErrCorrupt = errors.New("corrupt model file")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, a...))
}

// Load reads a model file's bytes.
func Load(b []byte) (*Model, error) {
	if len(b) < len(magic)+8 || string(b[:len(magic)]) != magic {
		return nil, corrupt("not a secaas model (no %q magic)", magic)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, corrupt("checksum mismatch (truncated or altered)")
	}
	p := body[len(magic):]
	hl := binary.LittleEndian.Uint32(p)
	p = p[4:]
	if hl > maxHeader || int(hl) > len(p) {
		return nil, corrupt("header of %d bytes in a file of %d", hl, len(b))
	}
	var h header
	dec := json.NewDecoder(bytes.NewReader(p[:hl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, corrupt("header: %v", err)
	}
	p = p[hl:]
	if h.Version != version {
		return nil, fmt.Errorf("model file version %d, this secaas reads version %d", h.Version, version)
	}
	m := h.Model
	if m.Kind != Classifier && m.Kind != Forecaster {
		return nil, corrupt("kind %q", m.Kind)
	}
	if err := m.Arch.validate(); err != nil {
		return nil, corrupt("%v", err)
	}
	F := m.Arch.Features
	if (m.Kind == Classifier && m.Arch.Out != 1) || (m.Kind == Forecaster && m.Arch.Out != F) {
		return nil, corrupt("%s with %d outputs for %d features", m.Kind, m.Arch.Out, F)
	}
	if len(m.Mean) != F || len(m.Scale) != F || (m.Features != nil && len(m.Features) != F) {
		return nil, corrupt("normalisation or feature list does not have %d entries", F)
	}
	for j := range F {
		if !finite(m.Mean[j]) || !finite(m.Scale[j]) || m.Scale[j] <= 0 {
			return nil, corrupt("normalisation of feature %d: mean %v, scale %v", j, m.Mean[j], m.Scale[j])
		}
	}
	if !finite(m.Threshold) || m.Window < 0 {
		return nil, corrupt("threshold %v, window %v", m.Threshold, m.Window)
	}
	n := newNet(m.Arch, 0)
	for i, pr := range n.params() {
		if len(p) < 4 {
			return nil, corrupt("weights end at tensor %d", i)
		}
		c := binary.LittleEndian.Uint32(p)
		p = p[4:]
		if int(c) != len(pr.w) || len(p) < 8*len(pr.w) {
			return nil, corrupt("tensor %d has %d values, the architecture %d", i, c, len(pr.w))
		}
		for j := range pr.w {
			v := math.Float64frombits(binary.LittleEndian.Uint64(p[8*j:]))
			if !finite(v) {
				return nil, corrupt("tensor %d value %d is %v", i, j, v)
			}
			pr.w[j] = v
		}
		p = p[8*len(pr.w):]
	}
	if len(p) != 0 {
		return nil, corrupt("%d bytes after the weights", len(p))
	}
	m.net = n
	return &m, nil
}

// LoadFile reads a model file.
func LoadFile(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Load(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
