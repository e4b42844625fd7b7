package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"secaas/internal/bench"
)

func benchACL(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench acl", env)
	var o bench.ACLOptions
	fs.IntVar(&o.ACRs, "acrs", 10000, "ACRs for the compile and apply timings")
	secs := fs.Int("seconds", 10, "seconds per forwarding case and round (the paper used 200)")
	fs.IntVar(&o.Rounds, "rounds", 3, "forwarding rounds (cases alternate; medians are reported)")
	fs.IntVar(&o.InstrRounds, "instr-rounds", 8, "rounds of the instruction count under callgrind (0: skip it)")
	fs.IntVar(&o.InstrPings, "instr-pings", 3000, "flood pings per case and round of the instruction count")
	fs.BoolVar(&o.ApplyOnly, "apply-only", false, "only the compile and apply timings (a minute, not an hour)")
	out := fs.String("out", "", "also write the tables to this Markdown file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	o.Duration = time.Duration(*secs) * time.Second
	o.Progress = env.Stderr
	r, err := bench.RunACL(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteACL(io.MultiWriter(env.Stdout, &buf), r, o)
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	return nil
}

func benchNAD(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench nad", env)
	packets := fs.Int("packets", 5_000_000, "packets in the synthetic capture")
	out := fs.String("out", "", "also write the table to this Markdown file")
	livePackets := fs.Int("live-packets", 1_000_000, "packets blasted at the live capture (0: skip the live part)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	r, err := bench.RunNAD(*packets, env.Stderr)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := io.MultiWriter(env.Stdout, &buf)
	bench.WriteNAD(w, r)
	if *livePackets > 0 {
		lr, err := bench.RunLive(ctx, *livePackets, env.Stderr)
		if err != nil {
			return err
		}
		bench.WriteLive(w, lr)
	}
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func benchVMI(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench vmi", env)
	out := fs.String("out", "", "also write the table to this Markdown file")
	root := fs.String("repo", ".", "repository root (for the cached guest kernel)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	rows, err := bench.RunVMI(ctx, *root, []int{512, 2048}, env.Stderr)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteVMI(io.MultiWriter(env.Stdout, &buf), rows)
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func benchKMon(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench kmon", env)
	var o bench.KMonOptions
	out := fs.String("out", "", "also write the table to this Markdown file")
	fs.StringVar(&o.Repo, "repo", ".", "repository root (for the cached guest kernel)")
	fs.IntVar(&o.Rounds, "rounds", 9, "pairs of runs, monitoring out and in")
	fs.IntVar(&o.Blocks, "blocks", 300000, "4 KiB writes per run (2,000 per dd)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	o.Progress = env.Stderr
	r, err := bench.RunKMon(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteKMon(io.MultiWriter(env.Stdout, &buf), r)
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func benchAV(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench av", env)
	out := fs.String("out", "", "also write the tables to this Markdown file")
	root := fs.String("repo", ".", "repository root (for the cached guest kernel)")
	table7 := fs.Bool("table7", true, "run Table 7 too (writes in guests: several minutes)")
	seconds := fs.Int("seconds", 2, "Table 7: seconds of writes per disk and round")
	rounds := fs.Int("rounds", 10, "Table 7 rounds per setting (medians and paired losses are reported)")
	modes := fs.String("modes", "bitmap,front,front-vhost", "Table 7 modes: bitmap, front (NBD), front-vhost (vhost-user-blk)")
	caches := fs.String("cache", "writeback,none", "Table 7 host cache modes of every disk: writeback (host page cache), none (O_DIRECT)")
	interleave := fs.Bool("interleave", true, "Table 7: write to a round's disks in turn in one run (false: one run per disk)")
	burst := fs.Int("burst", 64, "Table 7, interleaved: writes to one disk before the next one's turn (1 flatters a front: its wake-ups hide behind the other disks' requests)")
	vhostPoll := fs.Duration("vhost-poll", 0, "front-vhost: how long secaas polls the ring after a request, kicks off (0: never)")
	costWrites := fs.Int("cost-writes", 5000, "Table 7, bitmap mode: qemu-img bench writes per run counted under callgrind for the bitmap's own cost (0: skip it)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	wo := bench.AVWriteOptions{Modes: strings.Split(*modes, ","), Caches: strings.Split(*caches, ","), Seconds: *seconds, Rounds: *rounds, VhostPoll: *vhostPoll, Interleave: *interleave, Burst: *burst}
	co := bench.BitmapCostOptions{Caches: wo.Caches, Writes: *costWrites}
	cost := *table7 && *costWrites > 0 && slices.Contains(wo.Modes, "bitmap")
	if *table7 {
		if err := wo.Validate(); err != nil {
			return err
		}
	}
	if cost {
		if err := co.Validate(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "secaas-bench-av-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rows, err := bench.RunAVQuery(ctx, dir, env.Stderr)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := io.MultiWriter(env.Stdout, &buf)
	bench.WriteAVQuery(w, rows)
	var errs []error
	if *table7 {
		wrows, err := bench.RunAVWrite(ctx, *root, dir, wo, env.Stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(w)
		bench.WriteAVWrite(w, wrows, wo)
		// What fails from here on leaves Table 7, which took most of the
		// time, written out all the same.
		var crows []bench.BitmapCostRow
		if cost {
			if crows, err = bench.RunBitmapCost(ctx, dir, co, env.Stderr); err != nil {
				errs = append(errs, fmt.Errorf("bitmap cost: %w", err))
			} else {
				bench.GuestTimes(crows, wrows)
				fmt.Fprintln(w)
				bench.WriteBitmapCost(w, crows, co)
			}
		}
		if *out != "" {
			// The charts go beside the tables: FILE-front.svg, FILE-bitmap.svg.
			base := strings.TrimSuffix(*out, ".md")
			for _, c := range []struct {
				path string
				plot func(string) (bool, error)
			}{
				{base + "-front.svg", func(p string) (bool, error) { return bench.PlotAVFront(p, wrows) }},
				{base + "-bitmap.svg", func(p string) (bool, error) { return bench.PlotAVBitmap(p, wrows, crows) }},
			} {
				if drawn, err := c.plot(c.path); err != nil {
					errs = append(errs, fmt.Errorf("chart %s: %w", c.path, err))
				} else if drawn {
					fmt.Fprintf(env.Stderr, "av: chart %s\n", c.path)
				}
			}
		}
	}
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func benchDrift(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench drift", env)
	var o bench.DriftOptions
	fs.DurationVar(&o.Interval, "interval", 2*time.Second, "secaasd's reconcile interval")
	fs.IntVar(&o.Trials, "trials", 5, "tamperings per kind (delete, add, modify in place)")
	fs.IntVar(&o.Restarts, "restarts", 3, "secaasd restarts under the ping (0: skip)")
	fs.DurationVar(&o.PingEvery, "ping-every", 10*time.Millisecond, "ping interval across the restarts")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the tampering moments")
	fs.StringVar(&o.Secaasd, "secaasd", "", "secaasd binary (default: beside this program)")
	out := fs.String("out", "", "also write the tables to this Markdown file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	o.Progress = env.Stderr
	r, err := bench.RunDrift(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteDrift(io.MultiWriter(env.Stdout, &buf), r)
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func benchControlPlane(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench controlplane", env)
	var o bench.ControlPlaneOptions
	fs.IntVar(&o.Tenants, "tenants", 10, "tenants, one domain each, placed alternately on the two hosts")
	fs.IntVar(&o.VMs, "vms", 100, "VMs (switch ports) per tenant")
	fs.IntVar(&o.ACRs, "acrs", 10000, "ACRs in all")
	fs.IntVar(&o.Changes, "changes", 200, "ACR additions timed from the API call to the host's switch")
	fs.DurationVar(&o.ReadFor, "read-for", 3*time.Second, "how long API reads are driven")
	fs.IntVar(&o.Readers, "readers", 4, "concurrent API readers")
	fs.IntVar(&o.Events, "events", 20000, "events one agent reports in a burst")
	format := fs.String("o", "table", "output: table or json")
	out := fs.String("out", "", "also write the table to this Markdown file")
	prof := fs.String("cpuprofile", "", "write a CPU profile of the timed changes to this file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return usageError{fmt.Errorf("-o %q: table or json", *format)}
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			return err
		}
		defer f.Close()
		o.CPUProfile = f
	}
	o.Progress = env.Stderr
	r, err := bench.RunControlPlane(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteControlPlane(&buf, r)
	if *format == "json" {
		if err := printJSON(env.Stdout, r); err != nil {
			return err
		}
	} else {
		env.Stdout.Write(buf.Bytes())
	}
	if *out != "" {
		return os.WriteFile(*out, buf.Bytes(), 0o644)
	}
	return nil
}

func benchLSTM(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("bench lstm", env)
	var o bench.LSTMOptions
	fs.IntVar(&o.Windows, "windows", 21600, "training windows (the paper: 21,600)")
	fs.IntVar(&o.Epochs, "epochs", 50, "epochs (the paper: 50)")
	fs.IntVar(&o.Seq, "seq", 10, "sequence length T")
	out := fs.String("out", "", "also write the table to this Markdown file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	o.Progress = env.Stderr
	r, err := bench.RunLSTM(ctx, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	bench.WriteLSTM(io.MultiWriter(env.Stdout, &buf), r)
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", *out, err)
		}
	}
	return nil
}
