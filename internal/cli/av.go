package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"secaas/internal/av"
	"secaas/internal/disk"
	"secaas/internal/hyperav"
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
	var paths stringList
	fs.Var(&paths, "path", "file in the guest's file system (repeatable)")
	part := fs.Int("partition", 0, "partition number (default: find the ext4 file system)")
	sigs := fs.String("signatures", "", "directory of extra .ndb/.hdb/.yar signatures")
	hashes := fs.String("hashes", "", "SHA-256 list of known-bad files (sha256sum format)")
	policy := fs.String("policy", "any", "verdict policy: any (one positive engine) or majority")
	state := fs.String("state", "", "sector state file: kept between runs, unchanged files are answered from cache")
	asJSON := fs.Bool("json", false, "JSON output")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *image == "" {
		return errors.New("--image is required (the live form, --vm, runs through secaasd)")
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
	if *asJSON {
		if err := printJSON(env.Stdout, results); err != nil {
			return err
		}
	} else {
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
	}
	if infected {
		return errInfected
	}
	return nil
}

// errInfected makes the command exit non-zero when a file is infected.
var errInfected = errors.New("infected file(s) found")

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
