package chart

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{148, 103, 189, 255}, color.RGBA{255, 127, 14, 255},
}

// Series are told apart by more than colour: each also has its own dash
// pattern and glyph shape, so a chart reads in grey and to colour-blind eyes.
var (
	dashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)},
		{vg.Points(8), vg.Points(3), vg.Points(2), vg.Points(3)}, {vg.Points(4), vg.Points(4)}}
	glyphs = []draw.GlyphDrawer{draw.CircleGlyph{}, draw.BoxGlyph{}, draw.TriangleGlyph{}, draw.CrossGlyph{}, draw.RingGlyph{}}
)

// style gives series i its colour, dashes and glyph.
func style(i int) (color.Color, []vg.Length, draw.GlyphDrawer) {
	return palette[i%len(palette)], dashes[i%len(dashes)], glyphs[i%len(glyphs)]
}

// minFPR is the left edge of the log-scale ROC panel; a false positive
// rate of 0 is drawn there.
const minFPR = 1e-4

// ROC draws one curve per detector, (fpr, tpr) points, with its AUC in the
// legend: a linear panel of the whole curve, and beside it the region of
// low false positive rates on a log-scale x axis (down to 1e-4), where a
// detector that raises few false alarms is told from one that does not.
// Each curve has its own colour, dash pattern and glyph.
func ROC(path string, curves map[string][][2]float64, auc map[string]float64) error {
	names := make([]string, 0, len(curves))
	for n := range curves {
		names = append(names, n)
	}
	sort.Strings(names)
	panel := func(logX bool) (*plot.Plot, error) {
		p := plot.New()
		p.Title.Text = "ROC over windows"
		p.X.Label.Text = "false positive rate"
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
		if logX {
			p.Title.Text = "low false positive rates (log x)"
			p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
			p.X.Min = minFPR
		}
		p.Y.Label.Text = "true positive rate"
		p.Legend.Top, p.Legend.Left = false, false
		var diag plotter.XYs
		for _, x := range []float64{p.X.Min, 0.001, 0.01, 0.1, 1} {
			if x >= p.X.Min {
				diag = append(diag, plotter.XY{X: x, Y: x})
			}
		}
		dl, _ := plotter.NewLine(diag)
		dl.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
		dl.Color = color.Gray{160}
		p.Add(dl, plotter.NewGrid())
		for i, n := range names {
			xys := make(plotter.XYs, len(curves[n]))
			for k, pt := range curves[n] {
				xys[k].X, xys[k].Y = pt[0], pt[1]
				if logX {
					xys[k].X = max(pt[0], minFPR)
				}
			}
			l, sc, err := plotter.NewLinePoints(xys)
			if err != nil {
				return nil, fmt.Errorf("roc %s: %w", n, err)
			}
			col, dash, glyph := style(i)
			l.Color, l.Width, l.Dashes = col, vg.Points(1.5), dash
			sc.Color, sc.Shape, sc.Radius = col, glyph, vg.Points(2)
			p.Add(l, sc)
			p.Legend.Add(fmt.Sprintf("%s (AUC %.3f)", n, auc[n]), l, sc)
		}
		return p, nil
	}
	lin, err := panel(false)
	if err != nil {
		return err
	}
	lg, err := panel(true)
	if err != nil {
		return err
	}
	plots := [][]*plot.Plot{{lin, lg}}
	return save(path, 10*vg.Inch, 5*vg.Inch, func(c draw.Canvas) {
		canvases := plot.Align(plots, draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(10)}, c)
		lin.Draw(canvases[0][0])
		lg.Draw(canvases[0][1])
	})
}

// Series draws one panel per feature over time (seconds from the start),
// with the spans in shade shaded, like the paper's Fig. 6.
func Series(path string, names []string, t []float64, values [][]float64, shade [][2]float64) error {
	if len(names) == 0 || len(t) == 0 {
		return fmt.Errorf("series: nothing to draw")
	}
	plots := make([][]*plot.Plot, len(names))
	for j, name := range names {
		p := plot.New()
		p.Y.Label.Text = name
		xys := make(plotter.XYs, len(t))
		lo, hi := values[0][j], values[0][j]
		for i := range t {
			xys[i].X, xys[i].Y = t[i], values[i][j]
			lo, hi = min(lo, values[i][j]), max(hi, values[i][j])
		}
		if hi == lo {
			hi = lo + 1
		}
		for _, s := range shade {
			poly, err := plotter.NewPolygon(plotter.XYs{{X: s[0], Y: lo}, {X: s[1], Y: lo}, {X: s[1], Y: hi}, {X: s[0], Y: hi}})
			if err == nil {
				poly.Color = color.RGBA{255, 200, 200, 255}
				poly.LineStyle.Width = 0
				p.Add(poly)
			}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return fmt.Errorf("series %s: %w", name, err)
		}
		l.Color = palette[0]
		p.Add(l)
		if j == len(names)-1 {
			p.X.Label.Text = "seconds (attacks shaded)"
		}
		plots[j] = []*plot.Plot{p}
	}
	h := vg.Length(len(names)) * 1.3 * vg.Inch
	return save(path, 10*vg.Inch, h, func(c draw.Canvas) {
		tiles := draw.Tiles{Rows: len(names), Cols: 1, PadY: vg.Points(4)}
		canvases := plot.Align(plots, tiles, c)
		for j := range plots {
			plots[j][0].Draw(canvases[j][0])
		}
	})
}

func save(path string, w, h vg.Length, drawFn func(draw.Canvas)) error {
	var c interface {
		vg.CanvasWriterTo
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		// The fonts go into the file: it reads the same without them installed.
		c = vgsvg.NewWith(vgsvg.UseWH(w, h), vgsvg.EmbedFonts(true))
	default:
		c = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	drawFn(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Interval is a mean with the half-width of its confidence interval (NaN:
// none).
type Interval struct{ Mean, Half float64 }

// IntervalSeries is one series of an interval chart: a value per category.
type IntervalSeries struct {
	Name   string
	Values []Interval
}

// RefLine is a dashed horizontal line, a goal for instance.
type RefLine struct {
	Y     float64
	Label string
}

// Panel is one panel of an interval chart.
type Panel struct {
	Title  string
	Series []IntervalSeries
	Lines  []RefLine
}

// Intervals draws panels side by side, each with a point and a whisker
// (its confidence interval) per series and category, the series of a
// category next to each other, and dashed reference lines; like Table 7's
// losses with their goals.
func Intervals(path, ylabel string, cats []string, panels []Panel) error {
	if len(cats) == 0 || len(panels) == 0 {
		return fmt.Errorf("intervals: nothing to draw")
	}
	plots := make([][]*plot.Plot, 1)
	for _, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.Title
		p.Y.Label.Text = ylabel
		p.NominalX(cats...)
		p.Legend.Top = true
		n := len(pn.Series)
		for i, s := range pn.Series {
			if len(s.Values) != len(cats) {
				return fmt.Errorf("intervals %s: %d values for %d categories", s.Name, len(s.Values), len(cats))
			}
			off := 0.0
			if n > 1 {
				off = 0.5 * (float64(i)/float64(n-1) - 0.5) // series spread over half a category
			}
			var xys plotter.XYs
			var errs plotter.YErrors
			for k, v := range s.Values {
				if math.IsNaN(v.Mean) || math.IsInf(v.Mean, 0) {
					continue // not measured
				}
				xys = append(xys, plotter.XY{X: float64(k) + off, Y: v.Mean})
				h := 0.0
				if !math.IsNaN(v.Half) && !math.IsInf(v.Half, 0) {
					h = v.Half
				}
				errs = append(errs, struct{ Low, High float64 }{h, h})
			}
			if len(xys) == 0 {
				continue
			}
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return fmt.Errorf("intervals %s: %w", s.Name, err)
			}
			col, _, glyph := style(i)
			sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = col, vg.Points(2.5), glyph
			bars := &plotter.YErrorBars{XYs: xys, YErrors: errs, LineStyle: draw.LineStyle{Color: col, Width: vg.Points(1)}, CapWidth: vg.Points(4)}
			p.Add(bars, sc)
			p.Legend.Add(s.Name, sc)
		}
		for _, l := range pn.Lines {
			ln, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: l.Y}, {X: float64(len(cats)) - 0.5, Y: l.Y}})
			if err != nil {
				return err
			}
			ln.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			ln.Color = color.Gray{110}
			p.Add(ln)
			p.Legend.Add(l.Label, ln)
		}
		p.Add(plotter.NewGrid())
		plots[0] = append(plots[0], p)
	}
	// One y range for all panels, so that they compare at a glance.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range plots[0] {
		lo, hi = min(lo, p.Y.Min), max(hi, p.Y.Max)
	}
	lo = min(lo, 0)
	hi += 0.35 * (hi - lo) // room for the legend above the data
	for _, p := range plots[0] {
		p.Y.Min, p.Y.Max = lo, hi
	}
	w := vg.Length(len(panels)) * 6 * vg.Inch
	return save(path, w, 4.5*vg.Inch, func(c draw.Canvas) {
		tiles := draw.Tiles{Rows: 1, Cols: len(panels), PadX: vg.Points(8)}
		canvases := plot.Align(plots, tiles, c)
		for j := range plots[0] {
			plots[0][j].Draw(canvases[0][j])
		}
	})
}
