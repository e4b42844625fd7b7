package chart

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestChartsAreImages(t *testing.T) {
	dir := t.TempDir()
	roc := filepath.Join(dir, "roc.png")
	if err := ROC(roc, map[string][][2]float64{"a": {{0, 0}, {0.1, 0.8}, {1, 1}}}, map[string]float64{"a": 0.9}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(roc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() < 300 {
		t.Fatalf("roc.png: %v %v", err, img)
	}
	svg := filepath.Join(dir, "features.svg")
	if err := Series(svg, []string{"x", "y"}, []float64{0, 1, 2}, [][]float64{{1, 2}, {3, 2}, {1, 2}}, [][2]float64{{0.5, 1.5}}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(svg)
	if !bytes.Contains(b, []byte("<svg")) {
		t.Fatal("features.svg is not SVG")
	}
	if err := Series(svg, nil, nil, nil, nil); err == nil {
		t.Fatal("empty series accepted")
	}
}

// TestIntervals: points with whiskers per series and category, a point not
// measured (NaN) left out, and bad shapes refused.
func TestIntervals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loss.png")
	nan := math.NaN()
	err := Intervals(path, "loss, %", []string{"a", "b"}, []Panel{
		{Title: "one", Series: []IntervalSeries{{Name: "x", Values: []Interval{{1, 0.5}, {nan, nan}}}, {Name: "y", Values: []Interval{{2, nan}, {3, 1}}}}, Lines: []RefLine{{Y: 1, Label: "goal"}}},
		{Title: "two", Series: []IntervalSeries{{Name: "x", Values: []Interval{{-1, 2}, {0, 0}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 600 {
		t.Fatalf("loss.png: %v", err)
	}
	if err := Intervals(path, "", []string{"a", "b"}, []Panel{{Series: []IntervalSeries{{Name: "x", Values: []Interval{{1, 1}}}}}}); err == nil {
		t.Error("one value for two categories accepted")
	}
	if err := Intervals(path, "", nil, nil); err == nil {
		t.Error("nothing to draw accepted")
	}
}

// TestSVGEmbedsFontsAndROCHasALogPanel: SVGs carry their fonts, and the
// ROC has a second panel whose x axis is logarithmic (its tick labels are
// powers of ten), with a false positive rate of 0 drawn at its left edge.
func TestSVGEmbedsFontsAndROCHasALogPanel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "roc.svg")
	curves := map[string][][2]float64{"a": {{0, 0}, {0, 0.5}, {0.001, 0.8}, {1, 1}}, "b": {{0, 0}, {0.2, 0.6}, {1, 1}}}
	if err := ROC(path, curves, map[string]float64{"a": 0.95, "b": 0.7}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"@font-face", "data:font/ttf", "low false positive rates (log x)", ">0.001<", ">0.01<", "AUC 0.950"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("roc.svg has no %q", want)
		}
	}
	// The two curves differ in dash pattern, not only in colour.
	if n := bytes.Count(b, []byte("stroke-dasharray")); n < 2 {
		t.Errorf("%d dashed strokes", n)
	}
}
