package bench

import (
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	Mode      string // bitmap or front
	RW        string // write or randwrite
	BS        string
	OffKBs    float64
	OnKBs     float64
	OffIOPS   float64
	OnIOPS    float64
	LossPct   float64
	PaperLoss float64
	// Front mode: the same disk served by qemu-nbd (QEMU's own NBD server):
	// the cost of the NBD transport alone.
	QemuRefKBs float64 // the same disk through QEMU's own server of the transport
}

var paperTable7 = map[string][4]float64{ // normal KB/s, HyperAV KB/s, normal IOPS, HyperAV IOPS
	"write/4k": {13960, 13504, 3490, 3376}, "write/32k": {84732, 81867, 2647, 2558}, "write/128k": {138121, 137269, 1079, 1072},
	"randwrite/4k": {1664, 1644, 416, 411}, "randwrite/32k": {12417, 12383, 388, 386}, "randwrite/128k": {39884, 39594, 311, 309},
}

// RunAVWrite measures O_DIRECT writes in a guest (secaas-guest iobench, a
// static binary: the paper used fio) with write tracking off and on, in one
// guest per mode so that boot-to-boot variance stays out: bitmap mode
// toggles a recording dirty bitmap on the same disk between runs; front
// mode gives the guest two identical disks, one through QEMU's file driver
// (off) and one through secaas's NBD front (on). Off and on runs alternate,
// rounds times, and medians are reported.
func RunAVWrite(ctx context.Context, repoRoot, dir string, modes []string, seconds, rounds int, vhostPoll time.Duration, progress io.Writer) ([]AVWriteRow, error) {
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
	for _, mode := range modes {
		gdir := filepath.Join(dir, "guest-"+mode)
		os.MkdirAll(gdir, 0o755)
		imgA, err := mkimg(mode + "-a.raw")
		if err != nil {
			return nil, err
		}
		disks := []lab.GuestDisk{{Node: "disk0", File: imgA, Format: "raw"}}
		var front *hyperav.Front
		if mode == "front" || mode == "front-vhost" {
			imgB, err := mkimg(mode + "-b.raw")
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
			imgC, err := mkimg(mode + "-c.raw")
			if err != nil {
				return nil, err
			}
			qsock := filepath.Join(gdir, "qemu-ref.sock")
			os.Remove(qsock)
			ref := exec.CommandContext(ctx, "qemu-nbd", "-f", "raw", "-x", "disk", "--socket="+qsock, "--persistent", "--cache=writeback", imgC)
			refDisk := lab.GuestDisk{Node: "disk2", NBD: qsock, Export: "disk"}
			frontDisk := lab.GuestDisk{Node: "disk1", NBD: sock, Export: "disk"}
			if mode == "front-vhost" {
				ref = exec.CommandContext(ctx, "qemu-storage-daemon", "--blockdev", "driver=file,node-name=ref,filename="+imgC+",cache.direct=off",
					"--export", "type=vhost-user-blk,id=ref,node-name=ref,addr.type=unix,addr.path="+qsock+",writable=on")
				refDisk = lab.GuestDisk{Node: "disk2", VhostUser: qsock}
				frontDisk = lab.GuestDisk{Node: "disk1", VhostUser: sock}
				front, err = hyperav.StartVhostFront(imgB, sock, st, vhostPoll, nil)
			} else {
				front, err = hyperav.StartFront(imgB, sock, "disk", st, nil)
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
		fmt.Fprintf(progress, "av: guest for %s mode\n", mode)
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
		run := func(dev, rw, bs string) (float64, float64, error) {
			out, err := g.Run(fmt.Sprintf("secaas-guest iobench --file %s --rw %s --bs %s --seconds %d", dev, rw, bs, seconds), time.Duration(seconds+60)*time.Second)
			var res struct {
				BW   float64 `json:"bw_kbs"`
				IOPS float64 `json:"iops"`
			}
			if err == nil {
				err = json.Unmarshal([]byte(out), &res)
			}
			if err != nil || res.IOPS == 0 {
				return 0, 0, fmt.Errorf("iobench: %v: %.200s", err, out)
			}
			return res.BW, res.IOPS, nil
		}
		tracking := func(on bool) error {
			if q == nil {
				return nil
			}
			if on {
				return q.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": "disk0", "name": "secaas-dirty", "granularity": 4096}, nil)
			}
			return q.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": "disk0", "name": "secaas-dirty"}, nil)
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
					// The runs of a round (off, on, and QEMU's own server in
					// the front modes) go in a random order, each after the
					// host's dirty pages of the previous one are written back,
					// so that no run pays for another's writeback.
					kinds := []string{"off", "on"}
					if front != nil {
						kinds = append(kinds, "ref")
					}
					order.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
					for _, kind := range kinds {
						dev := map[string]string{"off": "/dev/vda", "on": "/dev/vda", "ref": "/dev/vdc"}[kind]
						if front != nil && kind == "on" {
							dev = "/dev/vdb"
						}
						if kind == "on" {
							if err := tracking(true); err != nil {
								stop()
								return nil, err
							}
						}
						unix.Sync()
						bw, iops, err := run(dev, rw, bs)
						if err == nil && kind == "on" {
							err = tracking(false)
						}
						if err != nil {
							stop()
							return nil, err
						}
						switch kind {
						case "on":
							onBW, onIO = append(onBW, bw), append(onIO, iops)
						case "off":
							offBW, offIO = append(offBW, bw), append(offIO, iops)
						default:
							nbdBW = append(nbdBW, bw)
						}
					}
				}
				p := paperTable7[rw+"/"+bs]
				row := AVWriteRow{Mode: mode, RW: rw, BS: bs, OffKBs: median(offBW), OnKBs: median(onBW), OffIOPS: median(offIO), OnIOPS: median(onIO),
					PaperLoss: 100 * (p[0] - p[1]) / p[0]}
				row.LossPct = 100 * (row.OffKBs - row.OnKBs) / row.OffKBs
				if len(nbdBW) > 0 {
					row.QemuRefKBs = median(nbdBW)
				}
				fmt.Fprintf(progress, "av:   %s %s %s: off %.0f KB/s, on %.0f KB/s (%.1f %%)\n", mode, rw, bs, row.OffKBs, row.OnKBs, row.LossPct)
				rows = append(rows, row)
			}
		}
		stop()
	}
	return rows, nil
}

// WriteAVWrite prints Table 7 with the paper's figures beside.
func WriteAVWrite(w io.Writer, rows []AVWriteRow, seconds, rounds int, vhostPoll time.Duration) {
	fmt.Fprintf(w, "### Table 7: guest write throughput with write tracking off and on (secaas bench av --table7)\n\nsecaas-guest iobench (O_DIRECT writes, one at a time) in a QEMU TCG guest (Debian kernel) on 512 MiB raw virtio disks (written out in full beforehand); %d s per run, off, on (and QEMU's own server) in a random order per round, host dirty pages written back before each run, median of %d. Bitmap mode: one disk, a recording dirty bitmap added and removed between runs. Front modes: identical disks in the same guest, through QEMU's file driver (off), secaas's front (on), and QEMU's own server of the same transport (what the transport costs by itself): front = NBD (reference: qemu-nbd), front-vhost = vhost-user-blk (reference: qemu-storage-daemon's vhost-user-blk export); the guest's RAM is shared in every mode; secaas's vhost-user server polls its ring for %s after a request (0: it waits for the guest's kick).\n\n", seconds, rounds, vhostPoll)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| mode\t rw\t bs\t KB/s off\t KB/s on\t IOPS off\t IOPS on\t loss\t goal\t paper loss\t KB/s via QEMU's server\t front vs QEMU's server\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rows {
		goal := "<= 1 %"
		if r.Mode != "bitmap" {
			goal = "<= 10 %"
		}
		nbd, vs := "-", "-"
		if r.QemuRefKBs > 0 {
			nbd, vs = fmt.Sprintf("%.0f", r.QemuRefKBs), fmt.Sprintf("%+.1f %%", 100*(r.OnKBs-r.QemuRefKBs)/r.QemuRefKBs)
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %.0f\t %.0f\t %.0f\t %.0f\t %.1f %%\t %s\t %.1f %%\t %s\t %s\t\n", r.Mode, r.RW, r.BS, r.OffKBs, r.OnKBs, r.OffIOPS, r.OnIOPS, r.LossPct, goal, r.PaperLoss, nbd, vs)
	}
	tw.Flush()
}
