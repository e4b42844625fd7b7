package bench

import (
	"bytes"
	"context"
	"math"
	"os/exec"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
)

// annotated is callgrind_annotate --inclusive=yes output of qemu-img bench
// with a recording bitmap (cache simulation on; "." marks no event).
const annotated = `--------------------------------------------------------------------------------
Events recorded:  Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
Events shown:     Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
--------------------------------------------------------------------------------
28,713,428 (100.0%) 7,845,733 (100.0%) 5,130,862 (100.0%) 681,005 (100.0%) 51,747 (100.0%) 92,689 (100.0%) 4,862 (100.0%) 16,879 (100.0%) 13,876 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
 1,171,034 ( 4.08%)   280,000 ( 3.57%)   150,000 ( 2.92%)  15,000 ( 2.20%)     13 ( 0.03%)      0             10 ( 0.21%)      .               .           ???:bdrv_set_dirty_iter [/usr/bin/qemu-img]
 1,153,900 ( 4.02%)   278,308 ( 3.55%)   146,252 ( 2.85%)  14,982 ( 2.20%)     13 ( 0.03%)      0             10 ( 0.21%)      .               .           ???:bdrv_set_dirty [/usr/bin/qemu-img]
`

func TestParseAnnotate(t *testing.T) {
	total, hook, err := parseAnnotate(annotated, "bdrv_set_dirty")
	if err != nil {
		t.Fatal(err)
	}
	if total.Ir != 28713428 || total.L1m != 681005+51747+92689 || total.LLm != 4862+16879+13876 {
		t.Errorf("totals %+v", total)
	}
	// The function's own line, not another whose name it starts.
	if hook.Ir != 1153900 || hook.L1m != 14982+13 || hook.LLm != 10 {
		t.Errorf("bdrv_set_dirty %+v", hook)
	}
	for name, bad := range map[string]string{
		"no function":  strings.ReplaceAll(annotated, "bdrv_set_dirty ", "bdrv_other "),
		"no totals":    strings.ReplaceAll(annotated, "PROGRAM TOTALS", ""),
		"no events":    strings.ReplaceAll(annotated, "Events shown:", "Events:"),
		"bad count":    strings.ReplaceAll(annotated, " 1,153,900 (", " 1,15x,900 ("),
		"short line":   annotated + "12 ???:bdrv_set_dirty [/usr/bin/qemu-img]\n",
		"no cache sim": strings.ReplaceAll(annotated, "Events shown:     Ir Dr Dw I1mr", "Events shown:     Ir Dr Dw X1mr"),
	} {
		if _, _, err := parseAnnotate(bad, "bdrv_set_dirty"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestWriteBitmapCost: the table gives the bitmap's time and its share of
// the guest's write, from Table 7's row of the same setting.
func TestWriteBitmapCost(t *testing.T) {
	rows := []BitmapCostRow{
		{Cache: "none", RW: "write", BS: "4k", Bitmap: cgCounts{Ir: 500, L1m: 10}, TotalIr: 10000, MHz: 2000, HostUS: 100},
		{Cache: "none", RW: "write", BS: "32k", Bitmap: cgCounts{Ir: 500}, TotalIr: 10000, MHz: 2000, HostUS: 100},
	}
	GuestTimes(rows, []AVWriteRow{
		{Mode: "front", Cache: "none", RW: "write", BS: "4k", OffIOPS: 1},
		{Mode: "bitmap", Cache: "writeback", RW: "write", BS: "4k", OffIOPS: 1},
		{Mode: "bitmap", Cache: "none", RW: "write", BS: "4k", OffIOPS: 5000},
	})
	// (500 + 10*10) cycles at 2000 MHz = 0.3 µs; the guest takes 200 µs.
	if c := rows[0].CostUS(); math.Abs(c-0.3) > 1e-9 || rows[0].GuestUS != 200 || math.Abs(rows[0].GuestLoss()-0.15) > 1e-9 {
		t.Fatalf("cost %v µs, guest %v µs, loss %v %%", c, rows[0].GuestUS, rows[0].GuestLoss())
	}
	if !math.IsNaN(rows[1].GuestLoss()) {
		t.Fatalf("no Table 7 row, yet a guest loss: %v", rows[1].GuestLoss())
	}
	var b bytes.Buffer
	WriteBitmapCost(&b, rows, BitmapCostOptions{Caches: []string{"none"}, Writes: 5000})
	for _, want := range []string{"5000 writes", "| none", "0.300", "0.30 %", "0.15 %", "<= 1 %", "| -"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
	if (BitmapCostOptions{Caches: []string{"unsafe"}, Writes: 5000}).Validate() == nil || (BitmapCostOptions{Caches: []string{"none"}, Writes: 10}).Validate() == nil {
		t.Error("bad options accepted")
	}
}

// TestBitmapCostLive counts QEMU's real bitmap under callgrind: it must
// record the writes and cost a few hundred instructions per write.
func TestBitmapCostLive(t *testing.T) {
	if testing.Short() {
		labtest.Missing(t, "-short")
	}
	for _, tool := range []string{"qemu-img", "qemu-nbd", "valgrind", "callgrind_annotate"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Missing(t, tool+" not installed")
		}
	}
	var progress bytes.Buffer
	rows, err := RunBitmapCost(context.Background(), t.TempDir(), BitmapCostOptions{Caches: []string{"writeback"}, Writes: 300}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 6 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Bitmap.Ir < 50 || r.Bitmap.Ir > 20000 || r.Bitmap.Ir >= r.TotalIr || r.HostUS <= 0 || r.Recorded <= 0 {
			t.Errorf("%s %s: %+v", r.RW, r.BS, r)
		}
	}
	t.Logf("%s", progress.String())
}
