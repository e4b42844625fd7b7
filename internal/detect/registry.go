package detect

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"secaas/internal/feature"
	"secaas/internal/lstm"
)

// Detector judges one server's windows, one at a time, in time order.
type Detector interface {
	Observe(w *feature.Window) Verdict
}

// Fitter is a detector that learns normal traffic from benign windows
// before it judges (eval's --train-first). Detectors that are not Fitters
// learn as they observe.
type Fitter interface {
	Fit(ws []feature.Window) error
}

// Params are what a detector may need; each takes what it uses.
type Params struct {
	History int           // stability detectors: N
	K       float64       // normalized: threshold in sd of the history's deviations
	Window  time.Duration // the feature window (checked against a model's)
	// Models are trained models; each lstm detector takes the first of its
	// kind (lstm a classifier, lstm-unsup a forecaster).
	Models []*lstm.Model
	// Train configures a Fitter that trains a model itself (lstm-unsup
	// without Model).
	Train    lstm.TrainConfig
	Progress func(lstm.Epoch)
}

// model returns the first of p.Models of kind k, or nil.
func (p Params) model(k lstm.Kind) *lstm.Model {
	for _, m := range p.Models {
		if m != nil && m.Kind == k {
			return m
		}
	}
	return nil
}

// Factory makes one server's detector.
type Factory func(Params) (Detector, error)

// ModelUse says whether a detector needs a trained model.
type ModelUse int

// Model uses.
const (
	NoModel    ModelUse = iota // learns as it observes
	NeedsModel                 // judges only with a model (Params.Model)
	FitsModel                  // a model, or trains its own in Fit (offline only)
)

type entry struct {
	summary string
	use     ModelUse
	new     Factory
}

var (
	regMu    sync.Mutex // guards registry
	registry = map[string]entry{}
)

// Register makes a detector available by name to every pipeline (CLI,
// lab, benchmark, node agent). It panics on a duplicate name.
func Register(name, summary string, use ModelUse, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("detect: " + name + " registered twice")
	}
	registry[name] = entry{summary, use, f}
}

// New makes the detector registered as name.
func New(name string, p Params) (Detector, error) {
	regMu.Lock()
	e, ok := registry[name]
	regMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown detector %q (have %v)", name, Names())
	}
	d, err := e.new(p)
	if err != nil {
		return nil, fmt.Errorf("detector %s: %w", name, err)
	}
	return d, nil
}

// Names lists the registered detectors, sorted.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Summary says what the detector registered as name is.
func Summary(name string) string {
	regMu.Lock()
	defer regMu.Unlock()
	return registry[name].summary
}

// Uses says whether the detector registered as name needs a model, and
// whether it exists.
func Uses(name string) (ModelUse, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	e, ok := registry[name]
	return e.use, ok
}

// CheckPolicy says whether a live policy may use detector name, with or
// without a model (live, a detector that fits needs a model too).
func CheckPolicy(name string, model bool) error {
	use, ok := Uses(name)
	switch {
	case !ok:
		return fmt.Errorf("nad detector %q is unknown (have %s)", name, strings.Join(Names(), ", "))
	case use == NoModel && model:
		return fmt.Errorf("nad detector %s takes no model", name)
	case use != NoModel && !model:
		return fmt.Errorf("nad detector %s needs a model (secaas nad train; the node loads it from its model directory)", name)
	}
	return nil
}

// stabilityDetector judges the 2018 features of each window, and with
// extra the features beyond the papers too.
type stabilityDetector struct {
	s     *Stability
	extra bool
	x     []float64 // scratch
}

func (d *stabilityDetector) Observe(w *feature.Window) Verdict {
	if !d.extra {
		return d.s.Observe(w.Stability[:])
	}
	d.x = append(append(d.x[:0], w.Stability[:]...), w.Extra[:]...)
	return d.s.Observe(d.x)
}

// NormalizedFeatures are the features the normalized detector judges: the
// 2018 paper's 8 and the extra ones.
var NormalizedFeatures = append(append([]string(nil), feature.StabilityNames[:]...), feature.ExtraNames[:]...)

func init() {
	Register("stability", "the 2018 paper's stability detector, eq. 1-4 as printed, on the 8 traffic-structure features", NoModel,
		func(p Params) (Detector, error) {
			return &stabilityDetector{s: NewStability(feature.StabilityNames[:], Config{History: p.History, Kind: Paper})}, nil
		})
	Register("normalized", "our stability variant: the 8 features and 3 more (new clients, RSTs out, most SYNs per client and port); robust spread, bounded terms, winsorized learning", NoModel,
		func(p Params) (Detector, error) {
			res := append(append([]float64(nil), feature.StabilityResolution[:]...), feature.ExtraResolution[:]...)
			return &stabilityDetector{s: NewStability(NormalizedFeatures, Config{History: p.History, Kind: Normalized, K: p.K, Resolution: res}), extra: true}, nil
		})
	registerLSTM("lstm", "LSTM-NAD (2020 paper): a stacked LSTM classifier trained on labelled windows (needs --model)", NeedsModel, lstm.Classifier)
	registerLSTM("lstm-unsup", "an LSTM forecaster trained on benign windows only; the score is its forecast error", FitsModel, lstm.Forecaster)
}

// modelKinds: the kind of model each LSTM detector takes (guarded by regMu).
var modelKinds = map[string]lstm.Kind{}

func registerLSTM(name, summary string, use ModelUse, kind lstm.Kind) {
	Register(name, summary, use, func(p Params) (Detector, error) { return newLSTM(p, kind) })
	regMu.Lock()
	modelKinds[name] = kind
	regMu.Unlock()
}

// ModelKind is the kind of model the detector registered as name takes
// ("" for a detector that takes none).
func ModelKind(name string) lstm.Kind {
	regMu.Lock()
	defer regMu.Unlock()
	return modelKinds[name]
}

var (
	_ Detector = (*stabilityDetector)(nil)
	_ Detector = (*lstmDetector)(nil)
	_ Fitter   = (*lstmDetector)(nil)
)
