package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"secaas/internal/av"
	"secaas/internal/hyperav"
	"secaas/internal/tenant"
)

// avWorker is HyperAV for one VM disk.
type avWorker struct {
	*worker
	svc *hyperav.Service
}

func (w *avWorker) base() *worker { return w.worker }

// ErrNoAV is returned for a VM without an AV policy on this node.
var ErrNoAV = errors.New("no AV policy for this VM on this node")

// dataDir is where per-VM state lives.
func (a *Agent) dataDir() string {
	if a.DataDir != "" {
		return a.DataDir
	}
	return filepath.Join(os.TempDir(), "secaas-agent")
}

// clamdLocked starts the node's clamd (one for every VM) on first use.
func (a *Agent) clamdLocked() (*av.Clamd, error) {
	if a.clamd != nil {
		return a.clamd, nil
	}
	dir := filepath.Join(a.dataDir(), "clamd")
	if _, err := av.WriteDatabase(filepath.Join(dir, "db"), a.Signatures); err != nil {
		return nil, err
	}
	c, err := av.StartClamd(context.Background(), av.ClamdConfig{Dir: dir, DatabaseDir: filepath.Join(dir, "db")})
	if err != nil {
		return nil, err
	}
	a.clamd = c
	return c, nil
}

// avEnginesLocked returns the engines a policy asks for (default: all the
// node has: clamd, and the hash list when secaasd was given one).
func (a *Agent) avEnginesLocked(c *av.Clamd, names []string) ([]av.Engine, error) {
	if a.hashes == nil && a.Hashes != "" {
		f, err := os.Open(a.Hashes)
		if err != nil {
			return nil, fmt.Errorf("hash list: %w", err)
		}
		hl, err := av.ParseHashList(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		a.hashes = hl
	}
	if len(names) == 0 {
		names = []string{"clamd"}
		if a.hashes != nil {
			names = append(names, "hashlist")
		}
	}
	var out []av.Engine
	for _, n := range names {
		switch n {
		case "clamd":
			out = append(out, c.Engine())
		case "hashlist":
			if a.hashes == nil {
				return nil, errors.New("the policy asks for the hash list, but this node has none (secaasd --hashes)")
			}
			out = append(out, a.hashes)
		}
	}
	return out, nil
}

// syncAVLocked starts the HyperAV workers the desired state asks for and
// stops the others.
func (a *Agent) syncAVLocked() {
	if a.avs == nil {
		a.avs = map[string]*avWorker{}
	}
	wants := a.wantedPolicies(func(vm *tenant.VM) any {
		if vm.AV == nil {
			return nil
		}
		return vm.AV
	})
	stopStale(a.avs, keys(wants))
	for id, w := range wants {
		if _, running := a.avs[id]; running {
			continue
		}
		p := *w.VM.AV
		ev := func(kind string, detail string, data []byte) {
			a.onEvent(Event{Kind: kind, Tenant: w.Tenant, TID: w.TID, VM: w.VM.Name, Subject: "vm/" + w.VM.Name, Detail: hidePaths(detail, w.Host), Data: data})
		}
		every, err := p.Params()
		if err != nil {
			continue // validated earlier
		}
		d := w.Host.Disk
		if d == nil || a.Host == nil {
			why := fmt.Sprintf("port %s has no disk in the host inventory", w.VM.Port)
			if a.Host == nil {
				why = "this node has no host roots configured"
			}
			a.avs[id] = &avWorker{startWorker(w.Key, func(ctx context.Context) { ev("av.waiting", why, nil) }), nil}
			continue
		}
		// The disk must open beneath the roots before clamd is started for it.
		if f, err := a.Host.OpenFile(d.Image, os.O_RDONLY, 0); err != nil {
			a.log.Warn("HyperAV: the disk does not open beneath the host roots", "vm", w.VM.Name, "port", w.VM.Port, "err", err)
			ev("av.error", fmt.Sprintf("the disk of port %s does not open beneath the host's roots (an admin checks its inventory record)", w.VM.Port), nil)
			continue
		} else {
			f.Close()
		}
		c, err := a.clamdLocked()
		if err != nil {
			ev("av.error", "clamd: "+err.Error(), nil)
			continue
		}
		pol, _ := av.ParsePolicy(p.Policy)
		engines, err := a.avEnginesLocked(c, p.Engines)
		if err != nil {
			ev("av.error", err.Error(), nil)
			continue
		}
		cfg := hyperav.ServiceConfig{Mode: d.Mode, Disk: d.Image, QMP: w.Host.QMP, Node: d.Node, Device: d.Device, Socket: d.Socket, Transport: d.Transport, Cache: d.Cache,
			Paths: p.Paths, Every: every, Partition: p.Partition,
			Dir:  filepath.Join(a.dataDir(), "av", fmt.Sprintf("%d-%s", w.TID, w.VM.Name)),
			AV:   &av.Scanner{Engines: engines, Policy: pol},
			Host: a.Host}
		svc, err := hyperav.NewService(cfg, func(kind string, v any) {
			b, _ := json.Marshal(v)
			if kind == hyperav.EventReport {
				ev(kind, "", b)
				return
			}
			if s, ok := v.(string); ok {
				ev(kind, s, nil)
				return
			}
			ev(kind, string(b), nil)
		})
		if err != nil {
			ev("av.error", err.Error(), nil)
			continue
		}
		ev("av.started", fmt.Sprintf("%s mode, %d paths every %s", d.Mode, len(p.Paths), every), nil)
		port, host := d.GuestPort, a.Host
		a.avs[id] = &avWorker{startWorker(w.Key, func(ctx context.Context) {
			if port != "" {
				go hyperav.ServeGuestPort(ctx, host, port, svc)
			}
			svc.Run(ctx)
		}), svc}
	}
}

func (a *Agent) stopAVLocked() {
	stopAll(a.avs)
	if a.clamd != nil {
		a.clamd.Stop()
		a.clamd = nil
	}
}

func (a *Agent) avService(tid int, vm string) (*hyperav.Service, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.avs[vmID(tid, vm)]
	if !ok || w.svc == nil {
		return nil, ErrNoAV
	}
	return w.svc, nil
}

// AVScan scans one file of a VM's disk now.
func (a *Agent) AVScan(ctx context.Context, tid int, vm, path string) (*hyperav.ScanResult, error) {
	s, err := a.avService(tid, vm)
	if err != nil {
		return nil, err
	}
	return s.Scan(ctx, path)
}

// AVIsolate isolates one file of a VM's disk.
func (a *Agent) AVIsolate(ctx context.Context, tid int, vm, path string) (*hyperav.Isolation, error) {
	s, err := a.avService(tid, vm)
	if err != nil {
		return nil, err
	}
	return s.Isolate(ctx, path)
}

// AVStatus is a VM disk's sector state and verdicts.
func (a *Agent) AVStatus(tid int, vm string) (*hyperav.Status, error) {
	s, err := a.avService(tid, vm)
	if err != nil {
		return nil, err
	}
	return s.Status(), nil
}
