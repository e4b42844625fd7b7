// Command secaasd is the secaas daemon: REST API, store and the node agent
// for this host's Open vSwitch bridge, in one process.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"secaas/internal/agent"
	"secaas/internal/api"
	"secaas/internal/cli"
	"secaas/internal/controller"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/ovs"
	"secaas/internal/store"
)

type config struct {
	listen, db, bridge, tokenFile string
	dataDir, signatures, hashes   string
	imageRoot, runRoot, shmRoot   string
	reconcile                     time.Duration
	debug                         bool
}

// The agent plans changes for dry runs.
var _ controller.Planner = (*agent.Agent)(nil)

func main() {
	var c config
	flag.StringVar(&c.listen, "listen", "127.0.0.1:8470", "API listen address")
	flag.StringVar(&c.db, "db", "/var/lib/secaas/secaas.db", "SQLite database path")
	flag.StringVar(&c.bridge, "bridge", "secaas0", "Open vSwitch bridge to enforce tenant domains on")
	flag.StringVar(&c.dataDir, "data-dir", "", "per-VM state (HyperAV sectors, quarantine) and the node's clamd (default: DB's directory/data)")
	flag.StringVar(&c.signatures, "signatures", "", "directory of extra .ndb/.hdb/.yar signatures for clamd")
	flag.StringVar(&c.hashes, "hashes", "", "SHA-256 list of known-bad files (sha256sum format) for HyperAV's hashlist engine")
	flag.StringVar(&c.tokenFile, "admin-token-file", "/var/lib/secaas/admin.token", "admin API token file (created with a random token if missing)")
	flag.StringVar(&c.imageRoot, "image-root", "/var/lib/secaas/images", "VM disk images (host inventory) must lie beneath this directory")
	flag.StringVar(&c.runRoot, "run-root", "/run/secaas", "VM sockets (QMP, HyperAV front, guest port; host inventory) must lie beneath this directory")
	flag.StringVar(&c.shmRoot, "shm-root", "/dev/shm", "guest RAM files (host inventory) must lie beneath this directory")
	flag.DurationVar(&c.reconcile, "reconcile", 2*time.Second, "interval of the flow reconcile loop")
	flag.BoolVar(&c.debug, "debug", false, "debug logging")
	version := flag.Bool("version", false, "print the version of this build and exit")
	flag.Parse()
	if *version {
		fmt.Println("secaasd " + cli.Version())
		return
	}
	level := slog.LevelInfo
	if c.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, log); err != nil {
		log.Error("secaasd failed", "err", err)
		os.Exit(1)
	}
}

func adminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	tok := "sa_" + hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return tok, os.WriteFile(path, []byte(tok+"\n"), 0o600)
}

func run(ctx context.Context, c config, log *slog.Logger) error {
	tok, err := adminToken(c.tokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(c.db), 0o700); err != nil {
		return err
	}
	st, err := store.Open(ctx, c.db)
	if err != nil {
		return err
	}
	defer st.Close()

	// Node events travel through a bounded queue: the agent may report
	// while the controller holds the store's write transaction.
	// Per-VM results (vmi.report, one per cycle) are coalesced instead:
	// only the latest of each VM matters, and none may push an alarm out.
	events := make(chan agent.Event, 256)
	results := newLatest()
	node := agent.New(ovs.NewBridge(c.bridge), log, func(e agent.Event) {
		if e.Data != nil {
			results.put(e)
			return
		}
		select {
		case events <- e:
		default:
			log.Warn("event queue full, dropping", "kind", e.Kind)
		}
	})
	node.DataDir, node.Signatures, node.Hashes = c.dataDir, c.signatures, c.hashes
	if node.DataDir == "" {
		node.DataDir = filepath.Join(filepath.Dir(c.db), "data")
	}
	// Per-VM state and quarantine are the daemon's alone.
	if err := os.MkdirAll(node.DataDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(node.DataDir, 0o700); err != nil {
		return err
	}
	roots, err := hostpath.OpenRoots(c.imageRoot, c.runRoot, c.shmRoot)
	if err != nil {
		return fmt.Errorf("host roots: %w", err)
	}
	defer roots.Close()
	node.Host = roots
	ctl, err := controller.New(st, node, tok, log)
	if err != nil {
		return err
	}
	ctl.Host = inventory.Host{Reserved: []string{c.bridge}, Roots: roots.Dirs()}
	if err := node.Start(ctx); err != nil {
		return err
	}
	if err := ctl.Sync(ctx); err != nil {
		return fmt.Errorf("apply stored policy: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-events:
				ctl.RecordNodeEvent(ctx, e.Tenant, e.Kind, e.Subject, e.Detail)
			case <-results.ready:
				for _, e := range results.take() {
					ctl.RecordNodeResult(ctx, store.Result{TID: e.TID, VM: e.VM, Kind: strings.TrimSuffix(e.Kind, ".report"), Tenant: e.Tenant, Doc: e.Data})
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		node.Run(ctx, c.reconcile)
		node.Close() // stop anomaly monitors; flows stay (fail-secure)
	}()

	srv := &http.Server{Addr: c.listen, Handler: api.New(ctl, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("secaasd listening", "addr", c.listen, "bridge", c.bridge, "db", c.db, "admin_token_file", c.tokenFile)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	return srv.Shutdown(shut)
}

// latest keeps the newest per-VM result of each kind until it is stored.
type latest struct {
	mu    sync.Mutex
	m     map[string]agent.Event
	ready chan struct{}
}

func newLatest() *latest { return &latest{m: map[string]agent.Event{}, ready: make(chan struct{}, 1)} }

func (l *latest) put(e agent.Event) {
	l.mu.Lock()
	l.m[fmt.Sprintf("%s/%d/%s", e.Kind, e.TID, e.VM)] = e
	l.mu.Unlock()
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

func (l *latest) take() []agent.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]agent.Event, 0, len(l.m))
	for k, e := range l.m {
		out = append(out, e)
		delete(l.m, k)
	}
	return out
}
