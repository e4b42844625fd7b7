package bench

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestPairedLoss: each round's loss is on against off of the same round;
// a round without an "off" figure is left out.
func TestPairedLoss(t *testing.T) {
	got := pairedLoss([]float64{100, 200, 0, 50}, []float64{90, 220, 10, 50})
	want := []float64{10, -10, 0}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

func TestAVWriteOptions(t *testing.T) {
	ok := AVWriteOptions{Modes: []string{"bitmap", "front-vhost"}, Caches: []string{"writeback", "none"}, Seconds: 1, Rounds: 1, Interleave: true, Burst: 64}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if s := ok.setups(); len(s) != 4 || s[0] != [2]string{"bitmap", "writeback"} || s[3] != [2]string{"front-vhost", "none"} {
		t.Fatalf("setups %v", s)
	}
	for name, o := range map[string]AVWriteOptions{
		"mode":   {Modes: []string{"mirror"}, Caches: []string{"none"}, Seconds: 1, Rounds: 1, Burst: 1},
		"cache":  {Modes: []string{"bitmap"}, Caches: []string{"directsync"}, Seconds: 1, Rounds: 1, Burst: 1},
		"burst":  {Modes: []string{"bitmap"}, Caches: []string{"none"}, Seconds: 1, Rounds: 1, Interleave: true},
		"rounds": {Modes: []string{"bitmap"}, Caches: []string{"none"}, Seconds: 1, Burst: 1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, o)
		}
	}
}

// TestWriteAVWrite: the table shows both losses, the interval and the
// goal of each mode.
func TestWriteAVWrite(t *testing.T) {
	var b bytes.Buffer
	WriteAVWrite(&b, []AVWriteRow{
		{Mode: "bitmap", Cache: "writeback", RW: "write", BS: "4k", OffKBs: 100, OnKBs: 99, LossPct: 1, LossMean: 0.5, LossHalf: 0.25},
		{Mode: "front-vhost", Cache: "none", RW: "write", BS: "4k", OffKBs: 100, OnKBs: 90, LossPct: 10, LossMean: 9, LossHalf: math.NaN(), QemuRefKBs: 80},
	}, AVWriteOptions{Seconds: 2, Rounds: 1, Interleave: true, Burst: 64})
	out := b.String()
	for _, want := range []string{"64 request(s) each", "0.5 % ± 0.2", "<= 1 %", "9.0 %", "<= 10 %", "+12.5 %", "| none"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
