package chart

import (
	"bytes"
	"image/png"
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
