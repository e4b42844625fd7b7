package bench

import (
	"math"
	"slices"

	"secaas/internal/chart"
)

var avCategories = []string{"write 4k", "write 32k", "write 128k", "randwrite 4k", "randwrite 32k", "randwrite 128k"}

// avIndex is a row's category in avCategories (-1: none).
func avIndex(rw, bs string) int {
	for i, c := range avCategories {
		if c == rw+" "+bs {
			return i
		}
	}
	return -1
}

// PlotAVFront draws the front modes' paired losses, secaas's and QEMU's own
// server's of the same transport side by side, one panel per host cache
// mode, with the 10 % goal. It reports false when the rows hold no front
// mode.
func PlotAVFront(path string, rows []AVWriteRow) (bool, error) {
	type key struct{ cache, name string }
	vals := map[key][]chart.Interval{}
	var caches, names []string
	put := func(cache, name string, i int, v chart.Interval) {
		k := key{cache, name}
		if vals[k] == nil {
			vals[k] = nanIntervals(len(avCategories))
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		if !slices.Contains(caches, cache) {
			caches = append(caches, cache)
		}
		vals[k][i] = v
	}
	for _, r := range rows {
		i := avIndex(r.RW, r.BS)
		if i < 0 || r.Mode == "bitmap" {
			continue
		}
		ours, ref := "secaas front over NBD", "qemu-nbd"
		if r.Mode == "front-vhost" {
			ours, ref = "secaas front over vhost-user-blk", "qemu-storage-daemon vhost-user-blk"
		}
		put(r.Cache, ours, i, chart.Interval{Mean: r.LossMean, Half: r.LossHalf})
		if r.QemuRefKBs > 0 {
			put(r.Cache, ref, i, chart.Interval{Mean: r.RefLossMean, Half: r.RefLossHalf})
		}
	}
	if len(caches) == 0 {
		return false, nil
	}
	var panels []chart.Panel
	for _, c := range caches {
		pn := chart.Panel{Title: "Table 7, front modes, host cache " + c, Lines: []chart.RefLine{{Y: 10, Label: "goal: 10 %"}}}
		for _, n := range names {
			if v, ok := vals[key{c, n}]; ok {
				pn.Series = append(pn.Series, chart.IntervalSeries{Name: n, Values: v})
			}
		}
		panels = append(panels, pn)
	}
	return true, chart.Intervals(path, "write loss against QEMU's file driver, % (95 % CI)", avCategories, panels)
}

// PlotAVBitmap draws bitmap mode's loss timed in the guest (paired, with
// its interval) beside the loss its counted cost gives, one panel per host
// cache mode, with the 1 % goal. It reports false when the rows hold no
// bitmap mode.
func PlotAVBitmap(path string, rows []AVWriteRow, cost []BitmapCostRow) (bool, error) {
	var caches []string
	timed, counted := map[string][]chart.Interval{}, map[string][]chart.Interval{}
	for _, r := range rows {
		i := avIndex(r.RW, r.BS)
		if i < 0 || r.Mode != "bitmap" {
			continue
		}
		if timed[r.Cache] == nil {
			timed[r.Cache], counted[r.Cache] = nanIntervals(len(avCategories)), nanIntervals(len(avCategories))
			caches = append(caches, r.Cache)
		}
		timed[r.Cache][i] = chart.Interval{Mean: r.LossMean, Half: r.LossHalf}
	}
	if len(caches) == 0 {
		return false, nil
	}
	for _, c := range cost {
		if i := avIndex(c.RW, c.BS); i >= 0 && counted[c.Cache] != nil {
			counted[c.Cache][i] = chart.Interval{Mean: c.GuestLoss(), Half: math.NaN()}
		}
	}
	var panels []chart.Panel
	for _, c := range caches {
		pn := chart.Panel{Title: "Table 7, bitmap mode, host cache " + c, Lines: []chart.RefLine{{Y: 1, Label: "goal: 1 %"}},
			Series: []chart.IntervalSeries{{Name: "timed in the guest (paired)", Values: timed[c]}}}
		if len(cost) > 0 {
			pn.Series = append(pn.Series, chart.IntervalSeries{Name: "counted: bdrv_set_dirty under callgrind", Values: counted[c]})
		}
		panels = append(panels, pn)
	}
	return true, chart.Intervals(path, "write loss with a recording bitmap, % (95 % CI)", avCategories, panels)
}

func nanIntervals(n int) []chart.Interval {
	out := make([]chart.Interval, n)
	for i := range out {
		out[i] = chart.Interval{Mean: math.NaN(), Half: math.NaN()}
	}
	return out
}
