package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/nbd"

	"golang.org/x/sys/unix"
)

// BitmapCostOptions choose the count of the bitmap's own cost: qemu-img
// bench on the host, the block layer under QEMU's virtio-blk, without a
// guest, its instructions and cache misses counted by callgrind, so that no
// timing noise hides a cost as small as this one.
type BitmapCostOptions struct {
	Caches []string // writeback, none
	Writes int      // per counted run
}

// Validate rejects what cannot be measured.
func (o BitmapCostOptions) Validate() error {
	for _, c := range o.Caches {
		if c != "writeback" && c != "none" {
			return fmt.Errorf("cache mode %q: want writeback or none", c)
		}
	}
	if o.Writes < 100 {
		return fmt.Errorf("bitmap cost: want at least 100 writes per run (got %d)", o.Writes)
	}
	return nil
}

// BitmapCostRow is what a recording dirty bitmap adds to one write.
type BitmapCostRow struct {
	Cache, RW, BS string
	// Bitmap: per write, in costHook and what it calls (the block
	// layer's only per-write hook of dirty bitmaps), with the bitmap minus
	// without.
	Bitmap   cgCounts
	TotalIr  float64 // instructions per write of the whole process, without the bitmap
	MHz      float64 // the CPU's clock
	HostUS   float64 // a native run's wall time per write, without the bitmap
	Recorded int64   // bytes the bitmap marked dirty in the counted run (read back over NBD)
	GuestUS  float64 // µs per write in the guest (Table 7, bitmap mode, off); 0: unknown
}

// CostUS is the bitmap's estimated time per write: callgrind's cycle
// estimate (one cycle per instruction, 10 per first-level miss, 100 per
// last-level miss) at the CPU's clock.
func (r BitmapCostRow) CostUS() float64 { return r.Bitmap.cycles() / r.MHz }

// HostLoss is the estimated cost relative to the host's own time per write.
func (r BitmapCostRow) HostLoss() float64 { return 100 * r.CostUS() / r.HostUS }

// GuestLoss is the estimated cost relative to the guest's time per write
// (NaN when unknown).
func (r BitmapCostRow) GuestLoss() float64 {
	if r.GuestUS <= 0 {
		return math.NaN()
	}
	return 100 * r.CostUS() / r.GuestUS
}

// bitmapCostStride is randwrite's step in blocks: a prime, so that the
// offsets (which wrap at the end of the image) scatter over all of it.
const bitmapCostStride = 7919

const costImageSize = 512 << 20

// costHook is the block layer's per-write hook of dirty bitmaps.
const costHook = "bdrv_set_dirty"

var (
	benchDone = regexp.MustCompile(`Run completed in ([0-9.]+) seconds`)
	annPct    = regexp.MustCompile(`\(\s*[0-9.]+%\)`)
)

// RunBitmapCost counts, under callgrind, what qemu-img bench spends per
// write to two like preallocated qcow2 images, one with a recording
// persistent dirty bitmap (4 KiB granularity, as HyperAV adds; cleared
// before each run, so that every write sets fresh bits), the other
// without. After each counted run the bitmap is read back over NBD
// (qemu-nbd's qemu:dirty-bitmap context) to check that it recorded the
// writes. A native run of the image without the bitmap gives the host's
// own time per write.
func RunBitmapCost(ctx context.Context, dir string, o BitmapCostOptions, progress io.Writer) ([]BitmapCostRow, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	mhz, err := cpuMHz()
	if err != nil {
		return nil, err
	}
	const bitmap = "secaas-dirty"
	img := func(name string, withBitmap bool) (string, error) {
		p := filepath.Join(dir, name)
		os.Remove(p)
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=full", p, strconv.Itoa(costImageSize)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("qemu-img create: %v: %s", err, out)
		}
		if withBitmap {
			if out, err := exec.CommandContext(ctx, "qemu-img", "bitmap", "--add", "-g", "4096", "-f", "qcow2", p, bitmap).CombinedOutput(); err != nil {
				return "", fmt.Errorf("qemu-img bitmap: %v: %s", err, out)
			}
		}
		return p, nil
	}
	off, err := img("cost-off.qcow2", false)
	if err != nil {
		return nil, err
	}
	defer os.Remove(off)
	on, err := img("cost-on.qcow2", true)
	if err != nil {
		return nil, err
	}
	defer os.Remove(on)
	var rows []BitmapCostRow
	for _, cache := range o.Caches {
		for _, rw := range []string{"write", "randwrite"} {
			for _, bs := range []string{"4k", "32k", "128k"} {
				n, _ := strconv.Atoi(strings.TrimSuffix(bs, "k"))
				size := n << 10
				step := size
				if rw == "randwrite" {
					step = size * bitmapCostStride
				}
				args := benchArgs(cache, o.Writes, size, step)
				if out, err := exec.CommandContext(ctx, "qemu-img", "bitmap", "--clear", "-f", "qcow2", on, bitmap).CombinedOutput(); err != nil {
					return nil, fmt.Errorf("qemu-img bitmap --clear: %v: %s", err, out)
				}
				totalOff, hookOff, err := countHook(ctx, dir, append(args, off))
				if err != nil {
					return nil, err
				}
				_, hookOn, err := countHook(ctx, dir, append(args, on))
				if err != nil {
					return nil, err
				}
				w := float64(o.Writes)
				row := BitmapCostRow{Cache: cache, RW: rw, BS: bs, MHz: mhz, TotalIr: totalOff.Ir / w,
					Bitmap: hookOn.sub(hookOff).per(w)}
				if row.Recorded, err = dirtyBytes(ctx, dir, on, bitmap); err != nil {
					return nil, err
				}
				// The run wrote o.Writes blocks of size, wrapping at the
				// image's end: the bitmap must hold at least what fits.
				if want := min(int64(o.Writes)*int64(size), costImageSize/2); row.Recorded < want {
					return nil, fmt.Errorf("bitmap cost %s/%s %s: the bitmap recorded %d bytes of %d written: qemu-img did not track", cache, rw, bs, row.Recorded, int64(o.Writes)*int64(size))
				}
				unix.Sync()
				out, err := exec.CommandContext(ctx, "qemu-img", append(args, off)...).CombinedOutput()
				if err != nil {
					return nil, fmt.Errorf("qemu-img bench: %v: %s", err, out)
				}
				m := benchDone.FindSubmatch(out)
				if m == nil {
					return nil, fmt.Errorf("qemu-img bench: no timing in %q", out)
				}
				secs, _ := strconv.ParseFloat(string(m[1]), 64)
				row.HostUS = secs * 1e6 / w
				fmt.Fprintf(progress, "av: bitmap cost %s %s %s: %.0f instructions/write in %s (of %.0f), about %.0f cycles: %.3f µs\n", cache, rw, bs, row.Bitmap.Ir, costHook, row.TotalIr, row.Bitmap.cycles(), row.CostUS())
				rows = append(rows, row)
			}
		}
	}
	return rows, nil
}

func benchArgs(cache string, count, size, step int) []string {
	return []string{"bench", "-w", "-q", "-f", "qcow2", "-t", cache, "-d", "1",
		"-c", strconv.Itoa(count), "-s", strconv.Itoa(size), "-S", strconv.Itoa(step)}
}

// cpuMHz is the clock /proc/cpuinfo gives the first CPU.
func cpuMHz() (float64, error) {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil && f > 0 {
				return f, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/cpuinfo gives no cpu MHz: the bitmap's cycles cannot be turned into time")
}

// countHook runs qemu-img under callgrind (with its cache simulation) and
// returns the counts of the whole process and those of costHook with its
// callees.
func countHook(ctx context.Context, dir string, args []string) (total, hook cgCounts, err error) {
	out := filepath.Join(dir, "cost.callgrind")
	defer os.Remove(out)
	cmd := exec.CommandContext(ctx, "valgrind", append([]string{"--tool=callgrind", "--cache-sim=yes", "--callgrind-out-file=" + out, "qemu-img"}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return total, hook, fmt.Errorf("callgrind qemu-img: %v: %.300s", err, b)
	}
	ann, err := exec.CommandContext(ctx, "callgrind_annotate", "--inclusive=yes", "--threshold=100", out).Output()
	if err != nil {
		return total, hook, fmt.Errorf("callgrind_annotate: %v", err)
	}
	return parseAnnotate(string(ann), costHook)
}

// names says whether one of a line's last two fields (the function, then
// maybe its object file) ends in suffix.
func names(fields []string, suffix string) bool {
	for _, f := range fields[max(len(fields)-2, 0):] {
		if strings.HasSuffix(f, suffix) {
			return true
		}
	}
	return false
}

// parseAnnotate reads callgrind_annotate's (inclusive) program totals and
// the line of function fn. Each event's column is a count, maybe with a
// percentage after it, or "." for none.
func parseAnnotate(ann, fn string) (total, f cgCounts, err error) {
	var events []string
	var got [2]map[string]float64
	for _, l := range strings.Split(ann, "\n") {
		if v, ok := strings.CutPrefix(l, "Events shown:"); ok {
			events = strings.Fields(v)
			continue
		}
		fields := strings.Fields(annPct.ReplaceAllString(l, ""))
		i := -1
		switch {
		case strings.HasSuffix(strings.TrimSpace(l), "PROGRAM TOTALS"):
			i = 0
		case names(fields, ":"+fn):
			i = 1
		}
		if i < 0 || events == nil {
			continue
		}
		if len(fields) < len(events) {
			return total, f, fmt.Errorf("callgrind_annotate: %d columns for %d events: %q", len(fields), len(events), l)
		}
		got[i] = map[string]float64{}
		for k, e := range events {
			v := strings.ReplaceAll(fields[k], ",", "")
			if v == "." {
				v = "0" // no such event in this function
			}
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return total, f, fmt.Errorf("callgrind_annotate: %s %q: %v", e, fields[k], err)
			}
			got[i][e] = n
		}
	}
	if got[0] == nil || got[1] == nil {
		return total, f, fmt.Errorf("callgrind_annotate: no program totals or no %s", fn)
	}
	if total, err = countsOf(got[0]); err != nil {
		return total, f, fmt.Errorf("callgrind_annotate: %w", err)
	}
	if f, err = countsOf(got[1]); err != nil {
		return total, f, fmt.Errorf("callgrind_annotate: %w", err)
	}
	return total, f, nil
}

// dirtyBytes reads a persistent bitmap of an image through qemu-nbd's
// qemu:dirty-bitmap meta context and counts the bytes it marks.
func dirtyBytes(ctx context.Context, dir, img, bitmap string) (int64, error) {
	sock := filepath.Join(dir, "cost-nbd.sock")
	os.Remove(sock)
	cmd := exec.CommandContext(ctx, "qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, "-x", "img", "-k", sock, img)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait(); os.Remove(sock) }()
	var c *nbd.Client
	var err error
	for i := 0; i < 100; i++ {
		if c, err = nbd.Dial(ctx, sock, "img", "qemu:dirty-bitmap:"+bitmap); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return 0, fmt.Errorf("qemu-nbd: %v %s", err, stderr.String())
	}
	defer c.Close()
	exts, err := c.BlockStatus("qemu:dirty-bitmap:"+bitmap, 0, c.Size)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range exts {
		if e.Flags&1 != 0 {
			n += e.Length
		}
	}
	return n, nil
}

// WriteBitmapCost prints the bitmap's own cost per write and what it
// makes of Table 7's bitmap-mode loss.
func WriteBitmapCost(w io.Writer, rows []BitmapCostRow, o BitmapCostOptions) {
	fmt.Fprintf(w, "### Table 7, bitmap mode: what the dirty bitmap itself costs per write (secaas bench av)\n\n"+
		"Counted, not timed, so that no noise hides it: qemu-img bench on the host (%d writes one at a time, through the block layer that serves QEMU's virtio-blk) under callgrind with its cache simulation, to two like preallocated 512 MiB qcow2 images, one with a recording persistent dirty bitmap (4 KiB granularity, cleared before the run, so every write sets fresh bits); randwrite strides %d blocks, wrapping at the image's end. "+
		"The bitmap's counts are those of %s (the block layer's only per-write hook of dirty bitmaps) and what it calls, with the bitmap minus without; \"recorded\" is what the bitmap marked, read back over NBD. "+
		"Its time is callgrind's cycle estimate (1 per instruction, 10 per first-level miss, 100 per last-level miss) at the CPU's clock; \"host\" is a native run without the bitmap; \"guest loss\" sets the bitmap's time against the guest's time per write in Table 7 (bitmap mode, untracked disk, 1/IOPS).\n\n", o.Writes, bitmapCostStride, costHook)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| host cache\t rw\t bs\t bitmap instructions/write\t of all\t bitmap misses/write (L1, LL)\t bitmap µs/write\t host µs/write\t host loss\t recorded MiB\t guest µs/write\t guest loss\t goal\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rows {
		guest, loss := "-", "-"
		if r.GuestUS > 0 {
			guest, loss = fmt.Sprintf("%.0f", r.GuestUS), fmt.Sprintf("%.2f %%", r.GuestLoss())
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %.0f\t %.0f\t %.1f, %.2f\t %.3f\t %.1f\t %.2f %%\t %.0f\t %s\t %s\t <= 1 %%\t\n", r.Cache, r.RW, r.BS, r.Bitmap.Ir, r.TotalIr, r.Bitmap.L1m, r.Bitmap.LLm, r.CostUS(), r.HostUS, r.HostLoss(), float64(r.Recorded)/(1<<20), guest, loss)
	}
	tw.Flush()
}

// GuestTimes fills each cost row's guest time per write from Table 7's
// bitmap-mode rows of the same cache, rw and bs.
func GuestTimes(cost []BitmapCostRow, table7 []AVWriteRow) {
	for i, c := range cost {
		for _, r := range table7 {
			if r.Mode == "bitmap" && r.Cache == c.Cache && r.RW == c.RW && r.BS == c.BS && r.OffIOPS > 0 {
				cost[i].GuestUS = 1e6 / r.OffIOPS
			}
		}
	}
}
