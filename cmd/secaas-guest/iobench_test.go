package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIOBenchTurns: several devices are written in whole turns with the
// same blocks, and each device's figures come from its own writes.
func TestIOBenchTurns(t *testing.T) {
	dir := t.TempDir()
	var names []string
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, p)
	}
	res, err := iobench(names, true, 4096, 1<<20, 3, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 3 {
		t.Fatalf("%d devices", len(res.Devices))
	}
	for _, d := range res.Devices {
		if d.Count == 0 || d.Count%3 != 0 || d.Count != res.Devices[0].Count {
			t.Fatalf("uneven turns: %+v", res.Devices)
		}
		if d.Busy <= 0 || d.Busy > res.Seconds || d.IOPS <= 0 || math.Abs(d.BW-d.IOPS*4) > 1e-6*d.BW {
			t.Fatalf("figures: %+v (run %.3f s)", d, res.Seconds)
		}
	}
	var images [][]byte
	for _, p := range names {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if bytes.Equal(images[0], make([]byte, 1<<20)) {
		t.Fatal("nothing was written")
	}
	if !bytes.Equal(images[0], images[1]) || !bytes.Equal(images[0], images[2]) {
		t.Fatal("the devices got different blocks")
	}
	if _, err := iobench(names[:1], false, 8192, 4096, 1, time.Millisecond); err == nil {
		t.Fatal("a span below the block size was accepted")
	}
	if _, err := iobench(names[:1], false, 4096, 1<<20, 0, time.Millisecond); err == nil {
		t.Fatal("a burst of 0 was accepted")
	}
}
