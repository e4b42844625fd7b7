package bench

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/av"
	"secaas/internal/disk"
	"secaas/internal/hyperav"
	"secaas/internal/lab"
	"secaas/internal/qmp"

	"golang.org/x/sys/unix"
)

// AVQueryRow is one file size of the paper's Table 8.
type AVQueryRow struct {
	Size    int64
	Changed time.Duration // HyperAV: the "changed?" query of an untouched file (cached verdict, 0 bytes read)
	Rebuild time.Duration // reading the file back from the disk image (ext4 extents)
	MD5     time.Duration // MD5 of the rebuilt file
	ClamAV  time.Duration // clamd INSTREAM scan of the rebuilt file
	Read    int64         // bytes the "changed?" query read (must be 0)
}

// Table 8 of the paper, in its unit of 10 µs.
var paperTable8 = map[int64][3]int64{ // ClamAV, MD5, HyperAV
	100 << 20: {1762181, 274085, 18796}, 50 << 20: {926236, 136295, 10254}, 10 << 20: {895595, 32509, 2841},
	1 << 20: {843912, 3143, 313}, 500 << 10: {816426, 1723, 155}, 100 << 10: {786880, 615, 39},
}

// RunAVQuery builds a disk image holding one file per size, scans each once
// (to record its verdict), then times the paper's three ways of answering
// "is this file still clean?" (median of 5).
func RunAVQuery(ctx context.Context, dir string, progress io.Writer) ([]AVQueryRow, error) {
	sizes := []int64{100 << 10, 500 << 10, 1 << 20, 10 << 20, 50 << 20, 100 << 20}
	rng := rand.New(rand.NewPCG(8, 8))
	files := map[string][]byte{}
	for _, s := range sizes {
		b := make([]byte, s)
		for i := 0; i+8 <= len(b); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				b[i+j] = byte(v >> (8 * j))
			}
		}
		files[fmt.Sprintf("/data/f%d", s)] = b
	}
	fmt.Fprintf(progress, "av: building a disk image with %d files\n", len(files))
	imgPath, err := lab.MakeDataDisk(dir, files, 256, true)
	if err != nil {
		return nil, err
	}
	img, err := disk.Open(imgPath)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if _, err := av.WriteDatabase(filepath.Join(dir, "db"), ""); err != nil {
		return nil, err
	}
	c, err := av.StartClamd(ctx, av.ClamdConfig{Dir: dir, DatabaseDir: filepath.Join(dir, "db")})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	st, err := hyperav.NewState(img.Size(), hyperav.DefaultGranularity)
	if err != nil {
		return nil, err
	}
	sc := &hyperav.Scanner{Disk: img, State: st, AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}
	vol, err := hyperav.OpenVolume(img, img.Size(), 0)
	if err != nil {
		return nil, err
	}
	var rows []AVQueryRow
	for _, s := range sizes {
		p := fmt.Sprintf("/data/f%d", s)
		fmt.Fprintf(progress, "av: %s\n", p)
		if _, err := sc.ScanFile(ctx, p); err != nil { // records the verdict
			return nil, err
		}
		row := AVQueryRow{Size: s}
		var q, rb, m, cl []time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			r, err := sc.ScanFile(ctx, p)
			if err != nil {
				return nil, err
			}
			q = append(q, time.Since(t0))
			if !r.Cached {
				return nil, fmt.Errorf("%s: the untouched file was not answered from cache", p)
			}
			row.Read = max(row.Read, r.BytesRead)
			t0 = time.Now()
			_, ino, err := vol.Locate(p)
			if err != nil {
				return nil, err
			}
			data, err := vol.ReadFile(ino)
			if err != nil {
				return nil, err
			}
			rb = append(rb, time.Since(t0))
			t0 = time.Now()
			md5.Sum(data)
			m = append(m, time.Since(t0))
			t0 = time.Now()
			if _, _, err := c.Engine().Scan(ctx, data); err != nil {
				return nil, err
			}
			cl = append(cl, time.Since(t0))
		}
		row.Changed, row.Rebuild, row.MD5, row.ClamAV = median(q), median(rb), median(m), median(cl)
		rows = append(rows, row)
	}
	return rows, nil
}

func sizeName(s int64) string {
	if s >= 1<<20 {
		return fmt.Sprintf("%dM", s>>20)
	}
	return fmt.Sprintf("%dK", s>>10)
}

// WriteAVQuery prints Table 8 with the paper's figures beside.
func WriteAVQuery(w io.Writer, rows []AVQueryRow) {
	fmt.Fprintf(w, "### Table 8: is the file still clean? (secaas bench av)\n\nOne file per size in an ext4 partition of a raw image; median of 5; times in ms (the paper's unit, 10 µs, converted).\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| size\t HyperAV \"changed?\"\t bytes read\t rebuild from disk\t MD5\t ClamAV (clamd)\t MD5 / HyperAV\t paper HyperAV\t paper MD5\t paper ClamAV\t paper MD5 / HyperAV\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
	for _, r := range rows {
		p := paperTable8[r.Size]
		fmt.Fprintf(tw, "| %s\t %s\t %d\t %s\t %s\t %s\t %.0fx\t %.2f\t %.2f\t %.2f\t %.0fx\t\n", sizeName(r.Size), ms(r.Changed), r.Read, ms(r.Rebuild), ms(r.MD5), ms(r.ClamAV),
			float64(r.MD5)/float64(r.Changed), float64(p[2])/100, float64(p[1])/100, float64(p[0])/100, float64(p[1])/float64(p[2]))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nGoal: \"changed?\" at least 100x faster than MD5 on 100 MB.")
}

// AVWriteRow is one line of the paper's Table 7: guest write throughput
// with write tracking off and on.
type AVWriteRow struct {
	Mode    string // bitmap, front or front-vhost
	Cache   string // the host's page cache: writeback (used) or none (O_DIRECT)
	RW      string // write or randwrite
	BS      string
	OffKBs  float64
	OnKBs   float64
	OffIOPS float64
	OnIOPS  float64
	LossPct float64 // of the medians
	// LossMean ± LossHalf: the mean of the rounds' paired losses (off and
	// on of the same round) and its 95 % confidence half-width.
	LossMean, LossHalf float64
	PaperLoss          float64
	// Front mode: the same disk served by qemu-nbd (QEMU's own NBD server):
	// the cost of the NBD transport alone.
	QemuRefKBs float64 // the same disk through QEMU's own server of the transport
	Accel      string  // the accelerator the guest ran on, and why
	// RefLossMean ± RefLossHalf: QEMU's own server's paired loss against
	// the same "off" figures.
	RefLossMean, RefLossHalf float64
}

var paperTable7 = map[string][4]float64{ // normal KB/s, HyperAV KB/s, normal IOPS, HyperAV IOPS
	"write/4k": {13960, 13504, 3490, 3376}, "write/32k": {84732, 81867, 2647, 2558}, "write/128k": {138121, 137269, 1079, 1072},
	"randwrite/4k": {1664, 1644, 416, 411}, "randwrite/32k": {12417, 12383, 388, 386}, "randwrite/128k": {39884, 39594, 311, 309},
}

// RunAVWrite measures O_DIRECT writes in a guest (secaas-guest iobench, a
// static binary: the paper used fio) with write tracking off and on, in one
// guest per mode and cache setting so that boot-to-boot variance stays
// out. The guest has like disks, tracked and untracked, and writes to them
// in turns (Burst requests each), so that all see the same host: bitmap mode
// has two disks and tracks one (a recording dirty bitmap, on the other
// disk the next round); front modes have one through QEMU's file driver
// (off), one through secaas's front (on) and one through QEMU's own server
// of the transport (what the transport costs). Each round is one such
// run; medians and paired losses over the rounds are reported.
func RunAVWrite(ctx context.Context, repoRoot, dir string, o AVWriteOptions, progress io.Writer) ([]AVWriteRow, error) {
	seconds, rounds := o.Seconds, o.Rounds
	kernel, err := lab.FindKernel(repoRoot)
	if err != nil {
		return nil, err
	}
	tool, err := lab.GuestTool(repoRoot, dir)
	if err != nil {
		return nil, err
	}
	// Images are written out in full first: a sparse image makes the
	// first pass over it pay for block allocation on the host, which
	// would land on whichever run came first.
	mkimg := func(name string) (string, error) {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			return "", err
		}
		zero := make([]byte, 1<<20)
		for i := 0; i < 512 && err == nil; i++ {
			_, err = f.Write(zero)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return p, err
	}
	var rows []AVWriteRow
	order := rand.New(rand.NewPCG(7, uint64(rounds)))
	for _, setup := range o.setups() {
		mode, cache := setup[0], setup[1]
		direct := cache == "none"
		name := mode + "-" + cache
		gdir := filepath.Join(dir, "guest-"+name)
		os.MkdirAll(gdir, 0o755)
		imgA, err := mkimg(name + "-a.raw")
		if err != nil {
			return nil, err
		}
		disks := []lab.GuestDisk{{Node: "disk0", File: imgA, Format: "raw", Direct: direct}}
		var front *hyperav.Front
		if mode == "bitmap" {
			// A second disk like the first: each round tracks one of them.
			imgB, err := mkimg(name + "-b.raw")
			if err != nil {
				return nil, err
			}
			disks = append(disks, lab.GuestDisk{Node: "disk1", File: imgB, Format: "raw", Direct: direct})
		}
		if mode == "front" || mode == "front-vhost" {
			imgB, err := mkimg(name + "-b.raw")
			if err != nil {
				return nil, err
			}
			st, err := hyperav.NewState(512<<20, hyperav.DefaultGranularity)
			if err != nil {
				return nil, err
			}
			sock := filepath.Join(gdir, "front.sock")
			// A third disk served by QEMU's own server of the same transport
			// (qemu-nbd, or qemu-storage-daemon's vhost-user-blk export):
			// what the transport costs by itself.
			imgC, err := mkimg(name + "-c.raw")
			if err != nil {
				return nil, err
			}
			qsock := filepath.Join(gdir, "qemu-ref.sock")
			os.Remove(qsock)
			ref := exec.CommandContext(ctx, "qemu-nbd", "-f", "raw", "-x", "disk", "--socket="+qsock, "--persistent", "--cache="+cache, imgC)
			refDisk := lab.GuestDisk{Node: "disk2", NBD: qsock, Export: "disk"}
			frontDisk := lab.GuestDisk{Node: "disk1", NBD: sock, Export: "disk"}
			if mode == "front-vhost" {
				ref = exec.CommandContext(ctx, "qemu-storage-daemon", "--blockdev", fmt.Sprintf("driver=file,node-name=ref,filename=%s,cache.direct=%s", imgC, onOff(direct)),
					"--export", "type=vhost-user-blk,id=ref,node-name=ref,addr.type=unix,addr.path="+qsock+",writable=on")
				refDisk = lab.GuestDisk{Node: "disk2", VhostUser: qsock}
				frontDisk = lab.GuestDisk{Node: "disk1", VhostUser: sock}
				front, err = hyperav.StartVhostFront(imgB, sock, st, hyperav.FrontOptions{Direct: direct, Poll: o.VhostPoll})
			} else {
				front, err = hyperav.StartFront(imgB, sock, "disk", st, hyperav.FrontOptions{Direct: direct})
			}
			if err != nil {
				return nil, err
			}
			if err := ref.Start(); err != nil {
				front.Close()
				return nil, fmt.Errorf("%s: %w", ref.Path, err)
			}
			defer func() { ref.Process.Kill(); ref.Wait() }()
			for i := 0; i < 100; i++ {
				if _, err := os.Stat(qsock); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			disks = append(disks, frontDisk, refDisk)
		}
		fmt.Fprintf(progress, "av: guest for %s mode, host cache %s\n", mode, cache)
		g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-bench-av", Kernel: kernel, MemMiB: 512, Dir: gdir,
			Files: map[string]string{"/bin/secaas-guest": tool}, Modules: []string{"virtio_pci", "virtio_blk"}, Disks: disks})
		if err != nil {
			if front != nil {
				front.Close()
			}
			return nil, err
		}
		var q *qmp.Client
		if mode == "bitmap" {
			if q, err = qmp.Dial(ctx, g.QMP); err != nil {
				g.Stop()
				return nil, err
			}
		}
		// run writes to the devices in turn (secaas-guest iobench): each
		// device's figures come from its own requests, interleaved with
		// the others', so that all see the same host.
		run := func(devs []string, rw, bs string) (map[string][2]float64, error) {
			got := map[string][2]float64{}
			lists := [][]string{devs}
			if !o.Interleave {
				lists = nil
				for _, d := range devs {
					lists = append(lists, []string{d})
				}
			}
			for _, l := range lists {
				unix.Sync()
				secs := seconds * len(l)
				out, err := g.Run(fmt.Sprintf("secaas-guest iobench --file %s --rw %s --bs %s --seconds %d --burst %d", strings.Join(l, ","), rw, bs, secs, max(o.Burst, 1)),
					time.Duration(secs+60)*time.Second)
				var res struct {
					Devices []struct {
						File string  `json:"file"`
						BW   float64 `json:"bw_kbs"`
						IOPS float64 `json:"iops"`
					} `json:"devices"`
				}
				if err == nil {
					err = json.Unmarshal([]byte(out), &res)
				}
				if err != nil || len(res.Devices) != len(l) {
					return nil, fmt.Errorf("iobench: %v: %.200s", err, out)
				}
				for _, d := range res.Devices {
					if d.IOPS <= 0 {
						return nil, fmt.Errorf("iobench: no write to %s: %.200s", d.File, out)
					}
					got[d.File] = [2]float64{d.BW, d.IOPS}
				}
			}
			return got, nil
		}
		tracking := func(node string, on bool) error {
			if on {
				return q.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": node, "name": "secaas-dirty", "granularity": 4096}, nil)
			}
			return q.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": node, "name": "secaas-dirty"}, nil)
		}
		stop := func() {
			if q != nil {
				q.Close()
			}
			g.Stop()
			if front != nil {
				front.Close()
			}
		}
		for _, rw := range []string{"write", "randwrite"} {
			for _, bs := range []string{"4k", "32k", "128k"} {
				var offBW, onBW, offIO, onIO, nbdBW []float64
				for r := 0; r < rounds; r++ {
					// One interleaved run per round. Bitmap mode: two like
					// disks, the tracked one alternating between rounds.
					// Front modes: QEMU's file driver (off), secaas's front
					// (on), QEMU's own server (ref). The order of the turn is
					// random per round; the host's dirty pages are written
					// back before each run.
					dev := map[string]string{"off": "/dev/vda", "on": "/dev/vdb", "ref": "/dev/vdc"}
					kinds := []string{"off", "on"}
					if front != nil {
						kinds = append(kinds, "ref")
					}
					tracked := ""
					if mode == "bitmap" {
						tracked = "disk1"
						if r%2 == 1 {
							dev["off"], dev["on"], tracked = "/dev/vdb", "/dev/vda", "disk0"
						}
						if err := tracking(tracked, true); err != nil {
							stop()
							return nil, err
						}
					}
					order.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
					var devs []string
					for _, k := range kinds {
						devs = append(devs, dev[k])
					}
					got, err := run(devs, rw, bs)
					if err == nil && tracked != "" {
						err = tracking(tracked, false)
					}
					if err != nil {
						stop()
						return nil, err
					}
					offBW, offIO = append(offBW, got[dev["off"]][0]), append(offIO, got[dev["off"]][1])
					onBW, onIO = append(onBW, got[dev["on"]][0]), append(onIO, got[dev["on"]][1])
					if front != nil {
						nbdBW = append(nbdBW, got[dev["ref"]][0])
					}
				}
				p := paperTable7[rw+"/"+bs]
				row := AVWriteRow{Mode: mode, Cache: cache, RW: rw, BS: bs, OffKBs: median(offBW), OnKBs: median(onBW), OffIOPS: median(offIO), OnIOPS: median(onIO),
					PaperLoss: 100 * (p[0] - p[1]) / p[0]}
				row.LossPct = 100 * (row.OffKBs - row.OnKBs) / row.OffKBs
				row.LossMean, row.LossHalf = meanCI(pairedLoss(offBW, onBW))
				if len(nbdBW) > 0 {
					row.QemuRefKBs = median(nbdBW)
					row.RefLossMean, row.RefLossHalf = meanCI(pairedLoss(offBW, nbdBW))
				}
				fmt.Fprintf(progress, "av:   %s/%s %s %s: off %.0f KB/s, on %.0f KB/s (%.1f %%; paired %.1f %% ± %.1f)\n", mode, cache, rw, bs, row.OffKBs, row.OnKBs, row.LossPct, row.LossMean, row.LossHalf)
				row.Accel = g.Accel.String()
				rows = append(rows, row)
			}
		}
		stop()
	}
	return rows, nil
}

// AVWriteOptions choose Table 7's runs.
type AVWriteOptions struct {
	Modes []string // bitmap, front (NBD), front-vhost (vhost-user-blk)
	// Caches are the host cache modes of every disk, tracked or not:
	// writeback (the host's page cache; QEMU's default) and none
	// (O_DIRECT, what clouds usually give VM disks).
	Caches    []string
	Seconds   int
	Rounds    int
	VhostPoll time.Duration // secaas's vhost-user server (0: no polling)
	// Interleave writes to the disks of a round in turn, Burst requests
	// each, in one run; otherwise each disk has a run of its own, one
	// after the other.
	Interleave bool
	Burst      int
}

// setups lists (mode, cache) pairs in run order.
func (o AVWriteOptions) setups() [][2]string {
	var out [][2]string
	for _, c := range o.Caches {
		for _, m := range o.Modes {
			out = append(out, [2]string{m, c})
		}
	}
	return out
}

// Validate rejects unknown modes and cache modes.
func (o AVWriteOptions) Validate() error {
	for _, m := range o.Modes {
		if m != "bitmap" && m != "front" && m != "front-vhost" {
			return fmt.Errorf("table 7 mode %q: want bitmap, front or front-vhost", m)
		}
	}
	for _, c := range o.Caches {
		if c != "writeback" && c != "none" {
			return fmt.Errorf("cache mode %q: want writeback or none", c)
		}
	}
	if o.Interleave && o.Burst < 1 {
		return fmt.Errorf("burst %d: want at least 1", o.Burst)
	}
	if o.Seconds < 1 || o.Rounds < 1 {
		return fmt.Errorf("table 7 needs at least one round of at least 1 s")
	}
	return nil
}

// pairedLoss is each round's loss in percent, on against off of the same
// round.
func pairedLoss(off, on []float64) []float64 {
	out := make([]float64, 0, len(off))
	for i := range min(len(off), len(on)) {
		if off[i] > 0 {
			out = append(out, 100*(off[i]-on[i])/off[i])
		}
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// WriteAVWrite prints Table 7 with the paper's figures beside.
func WriteAVWrite(w io.Writer, rows []AVWriteRow, o AVWriteOptions) {
	how := fmt.Sprintf("per round one run that writes to the tracked and untracked disks (and QEMU's own server's) in turn, %d request(s) each, in an order drawn per round, %d s per disk, each disk's figures over the time spent in its own turns", o.Burst, o.Seconds)
	if !o.Interleave {
		how = fmt.Sprintf("per round one %d s run per disk (tracked, untracked, and QEMU's own server's), in an order drawn per round", o.Seconds)
	}
	fmt.Fprintf(w, "### Table 7: guest write throughput with write tracking off and on (secaas bench av --table7)\n\nsecaas-guest iobench (O_DIRECT writes, one at a time) in a QEMU guest (accelerator %s; Debian kernel) on 512 MiB raw virtio disks (written out in full beforehand); %s; host dirty pages written back before each run; KB/s and IOPS are medians of %d rounds, \"loss\" is the loss of the medians, \"paired loss\" the mean of the rounds' own losses (off and on of the same round) with its 95 %% confidence interval. Host cache: every disk of a row, tracked or not, goes through the host's page cache (writeback, QEMU's default) or bypasses it (none: O_DIRECT, as clouds usually run VM disks). Bitmap mode: two like disks, a recording dirty bitmap on one of them (the other one the next round). Front modes: identical disks in the same guest, through QEMU's file driver (off), secaas's front (on), and QEMU's own server of the same transport (what the transport costs by itself): front = NBD (reference: qemu-nbd), front-vhost = vhost-user-blk (reference: qemu-storage-daemon's vhost-user-blk export); the guest's RAM is shared in every mode; secaas's vhost-user server polls its ring for %s after a request (0: it waits for the guest's kick).\n\n", accels(rows, func(r AVWriteRow) string { return r.Accel }), how, o.Rounds, o.VhostPoll)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| mode\t host cache\t rw\t bs\t KB/s off\t KB/s on\t IOPS off\t IOPS on\t loss\t paired loss (95 % CI)\t goal\t paper loss\t KB/s via QEMU's server\t front vs QEMU's server\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rows {
		goal := "<= 1 %"
		if r.Mode != "bitmap" {
			goal = "<= 10 %"
		}
		nbd, vs := "-", "-"
		if r.QemuRefKBs > 0 {
			nbd, vs = fmt.Sprintf("%.0f", r.QemuRefKBs), fmt.Sprintf("%+.1f %%", 100*(r.OnKBs-r.QemuRefKBs)/r.QemuRefKBs)
		}
		paired := fmt.Sprintf("%.1f %% ± %.1f", r.LossMean, r.LossHalf)
		if math.IsNaN(r.LossHalf) {
			paired = fmt.Sprintf("%.1f %%", r.LossMean)
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t %.0f\t %.0f\t %.0f\t %.0f\t %.1f %%\t %s\t %s\t %.1f %%\t %s\t %s\t\n", r.Mode, r.Cache, r.RW, r.BS, r.OffKBs, r.OnKBs, r.OffIOPS, r.OnIOPS, r.LossPct, paired, goal, r.PaperLoss, nbd, vs)
	}
	tw.Flush()
}
