package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"flag"

	"secaas/internal/av"
	"secaas/internal/disk"
	"secaas/internal/hyperav"
	"secaas/internal/tenant"
)

// avEngines starts the engines of an offline scan: our own clamd (offline
// database, plus --signatures), and a hash list when given.
func avEngines(ctx context.Context, sigs, hashes, policy string) (*av.Scanner, func(), error) {
	dir, err := os.MkdirTemp("", "secaas-av-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if _, err := av.WriteDatabase(filepath.Join(dir, "db"), sigs); err != nil {
		cleanup()
		return nil, nil, err
	}
	c, err := av.StartClamd(ctx, av.ClamdConfig{Dir: dir, DatabaseDir: filepath.Join(dir, "db")})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	stop := func() { c.Stop(); cleanup() }
	pol, err := av.ParsePolicy(policy)
	if err != nil {
		stop()
		return nil, nil, err
	}
	s := &av.Scanner{Engines: []av.Engine{c.Engine()}, Policy: pol}
	if hashes != "" {
		f, err := os.Open(hashes)
		if err != nil {
			stop()
			return nil, nil, err
		}
		hl, err := av.ParseHashList(f)
		f.Close()
		if err != nil {
			stop()
			return nil, nil, err
		}
		s.Engines = append(s.Engines, hl)
	}
	return s, stop, nil
}

func avScan(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("av scan", env)
	image := fs.String("image", "", "disk image (raw or qcow2, partitioned or not): scan offline, no VM")
	fs.Int("tid", 0, "domain TID (with --vm: scan through secaasd)")
	fs.String("vm", "", "a VM with an AV policy: scan through secaasd")
	addClientFlags(fs, env)
	var paths stringList
	fs.Var(&paths, "path", "file in the guest's file system (repeatable)")
	part := fs.Int("partition", 0, "partition number (default: find the ext4 file system)")
	sigs := fs.String("signatures", "", "directory of extra .ndb/.hdb/.yar signatures")
	hashes := fs.String("hashes", "", "SHA-256 list of known-bad files (sha256sum format)")
	policy := fs.String("policy", "any", "verdict policy: any (one positive engine) or majority")
	state := fs.String("state", "", "sector state file: kept between runs, unchanged files are answered from cache")
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *image == "" {
		return avScanVM(ctx, env, args)
	}
	if len(paths) == 0 {
		return errors.New("--path is required")
	}
	img, err := disk.Open(*image)
	if err != nil {
		return err
	}
	defer img.Close()
	var st *hyperav.State
	if *state != "" {
		st, err = hyperav.LoadState(*state, img.Size(), hyperav.DefaultGranularity)
	} else {
		st, err = hyperav.NewState(img.Size(), hyperav.DefaultGranularity)
	}
	if err != nil {
		return err
	}
	scanner, stop, err := avEngines(ctx, *sigs, *hashes, *policy)
	if err != nil {
		return err
	}
	defer stop()
	sc := &hyperav.Scanner{Disk: img, Partition: *part, State: st, AV: scanner}
	var results []*hyperav.ScanResult
	infected := false
	for _, p := range paths {
		r, err := sc.ScanFile(ctx, p)
		if err != nil {
			return err
		}
		results = append(results, r)
		infected = infected || r.Verdict == string(av.Infected)
	}
	err = render(env, *out, results, func(*table) {
		for _, r := range results {
			var engines []string
			for _, e := range r.Engines.Results {
				s := e.Engine + "=" + string(e.Verdict)
				if e.Signature != "" {
					s += "(" + e.Signature + ")"
				}
				if e.Err != "" {
					s += "(" + e.Err + ")"
				}
				engines = append(engines, s)
			}
			how := fmt.Sprintf("read %d bytes", r.BytesRead)
			if r.Cached {
				how = "cached, read 0 bytes"
			}
			fmt.Fprintf(env.Stdout, "%s  %s  %d bytes in %d disk ranges  %s  [%s]\n", r.Verdict, r.Path, r.Size, len(r.Ranges), how, strings.Join(engines, " "))
		}
	})
	if err != nil {
		return err
	}
	if infected {
		return exitError(ExitNegative)
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
func (s *stringList) Type() string       { return "strings" }

func avEnable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm, paths, engines string
	var p tenant.AVPolicy
	c, _, err := simple("av enable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.StringVar(&paths, "paths", "", "comma-separated files to scan every round")
		fs.StringVar(&p.Schedule, "schedule", "30s", "time between rounds")
		fs.IntVar(&p.Partition, "partition", 0, "partition of the ext4 file system (0: find it)")
		fs.StringVar(&p.Policy, "policy", "any", "verdict policy: any or majority")
		fs.StringVar(&engines, "engines", "", "comma-separated engines: clamd,hashlist (default: all the node has)")
	})
	if err != nil {
		return err
	}
	if paths != "" {
		p.Paths = strings.Split(paths, ",")
	}
	if engines != "" {
		p.Engines = strings.Split(engines, ",")
	}
	return c.do(ctx, "PUT", fmt.Sprintf("/v1/domains/%d/vms/%s/av", tid, vm), p, nil)
}

func avDisable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	c, _, err := simple("av disable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
	})
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/domains/%d/vms/%s/av", tid, vm), nil, nil)
}

// avVMRequest runs a POST with {"path"} against a VM's HyperAV.
func avVMRequest(ctx context.Context, env *Env, name, action string, args []string) error {
	var tid int
	var vm, path string
	var format *string
	c, _, err := simple(name, env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.StringVar(&path, "path", "", "file in the guest's file system")
		format = addOutput(fs)
	})
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do(ctx, "POST", fmt.Sprintf("/v1/domains/%d/vms/%s/av/%s", tid, vm, action), map[string]string{"path": path}, &out); err != nil {
		return err
	}
	if *format == FormatTable || *format == FormatWide {
		*format = FormatJSON // a scan result or an isolation has no table of its own
	}
	if err := render(env, *format, out, nil); err != nil {
		return err
	}
	if out["verdict"] == "INFECTED" {
		return exitError(ExitNegative)
	}
	return nil
}

func avScanVM(ctx context.Context, env *Env, args []string) error {
	return avVMRequest(ctx, env, "av scan", "scan", args)
}

func avIsolate(ctx context.Context, env *Env, args []string) error {
	return avVMRequest(ctx, env, "av isolate", "isolate", args)
}

func avStatus(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	c, _, format, err := readVerb("av status", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
	})
	if err != nil {
		return err
	}
	var st hyperav.Status
	if err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d/vms/%s/av/report", tid, vm), nil, &st); err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, st, nil)
	}
	fmt.Fprintf(env.Stdout, "%s mode, %d epochs; chunks: %d clean, %d written, %d infected\n", st.Mode, st.Epochs,
		st.Chunks[hyperav.Clean], st.Chunks[hyperav.Written], st.Chunks[hyperav.Infected])
	for _, p := range hyperav.SortedPaths(st.Files) {
		f := st.Files[p]
		iso := ""
		if f.Isolated {
			iso = " (isolated)"
		}
		fmt.Fprintf(env.Stdout, "%-9s %s%s  scanned %s  %s\n", f.Verdict, p, iso, f.Scanned.Format(time.RFC3339), f.Engines.Signatures())
	}
	return nil
}
