package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlotAV: the charts are drawn from the rows they are given, one panel
// per host cache mode, QEMU's own servers beside secaas's front, and the
// counted bitmap cost beside the timed one.
func TestPlotAV(t *testing.T) {
	var rows []AVWriteRow
	for _, cache := range []string{"writeback", "none"} {
		for _, rw := range []string{"write", "randwrite"} {
			for _, bs := range []string{"4k", "32k", "128k"} {
				rows = append(rows,
					AVWriteRow{Mode: "bitmap", Cache: cache, RW: rw, BS: bs, LossMean: 0.3, LossHalf: 1.1, OffIOPS: 3000},
					AVWriteRow{Mode: "front-vhost", Cache: cache, RW: rw, BS: bs, LossMean: 12, LossHalf: 2, QemuRefKBs: 1, RefLossMean: 12.5, RefLossHalf: math.NaN()})
			}
		}
	}
	cost := []BitmapCostRow{{Cache: "none", RW: "write", BS: "4k", Bitmap: cgCounts{Ir: 600}, MHz: 2000}}
	GuestTimes(cost, rows)
	dir := t.TempDir()
	front, bitmap := filepath.Join(dir, "front.svg"), filepath.Join(dir, "bitmap.svg")
	if ok, err := PlotAVFront(front, rows); !ok || err != nil {
		t.Fatalf("front: %v %v", ok, err)
	}
	if ok, err := PlotAVBitmap(bitmap, rows, cost); !ok || err != nil {
		t.Fatalf("bitmap: %v %v", ok, err)
	}
	for path, want := range map[string][]string{
		front:  {"host cache writeback", "host cache none", "secaas front over vhost-user-blk", "qemu-storage-daemon", "goal: 10 %", "randwrite 128k"},
		bitmap: {"host cache none", "timed in the guest", "counted", "goal: 1 %"},
	} {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), "<svg") {
			t.Fatalf("%s: not SVG: %v", path, err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: no %q", filepath.Base(path), w)
			}
		}
	}
	if ok, err := PlotAVFront(filepath.Join(dir, "none.svg"), rows[:1]); ok || err != nil {
		t.Errorf("no front rows, yet drawn: %v %v", ok, err)
	}
}
