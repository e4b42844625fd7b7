package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"secaas/internal/agent"
	"secaas/internal/api"
	"secaas/internal/bus"
	"secaas/internal/controller"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/ovs"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// Config is what secaasd is told.
type Config struct {
	DB         string // SQLite database path (":memory:" for a throwaway store)
	Bridge     *ovs.Bridge
	AdminToken string // the admin token itself, or
	TokenFile  string // the file that holds it (created with a random token if missing)
	DataDir    string // per-VM state and the node's clamd (default: DB's directory/data)
	Signatures string // extra clamd signatures
	Hashes     string // SHA-256 list of known-bad files
	// Roots beneath which the VMs' host resources must lie.
	ImageRoot, RunRoot, ShmRoot string
	// Event retention: events older than EventMaxAge go, and all but the
	// newest EventMaxCount (0: no limit of that kind).
	EventMaxAge   time.Duration
	EventMaxCount int
	Log           *slog.Logger
	// Node is this host's name in the fleet (default: DefaultNode).
	Node string
}

// Daemon is a wired secaasd: store, controller and API, the agent, and
// the bus between them.
type Daemon struct {
	Store      *store.Store
	Agent      *agent.Agent
	Controller *controller.Controller
	API        *api.Server
	Bus        *bus.Local
	// Node is this host's name in the fleet.
	Node     string
	reporter *agent.Reporter
	roots    *hostpath.Roots
	cfg      Config
	log      *slog.Logger
	stop     context.CancelFunc // ends the loops New starts
	wg       sync.WaitGroup
}

// DesiredFile is where an agent persists its last desired state, in its
// data directory.
const DesiredFile = "desired.json"

// New opens the store, makes the agent for the bridge (ensuring it, but
// installing nothing), the controller over both and the bus between
// them, starts the agent following its desired state (first the one it
// persisted, so a restart changes the switch only where the state moved
// on) and publishes the stored state; it returns once this host enforces
// it (or says why not).
func New(ctx context.Context, c Config) (*Daemon, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Node == "" {
		c.Node = DefaultNode()
	}
	if !tenant.ValidName(c.Node) {
		return nil, fmt.Errorf("node name %q: 1-63 letters, digits, '.', '_' or '-'", c.Node)
	}
	tok := c.AdminToken
	if tok == "" {
		var err error
		if tok, err = adminToken(c.TokenFile); err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
	}
	if c.DB != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(c.DB), 0o700); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(ctx, c.DB)
	if err != nil {
		return nil, err
	}
	loops, stop := context.WithCancel(context.WithoutCancel(ctx))
	d := &Daemon{Store: st, Node: c.Node, cfg: c, log: log, stop: stop, Bus: bus.NewLocal(), reporter: agent.NewReporter(c.Node)}
	fail := func(err error) (*Daemon, error) {
		d.Close()
		return nil, err
	}
	// The agent's reports travel through a reporter that never blocks the
	// agent and never drops an event (a batch the store refuses is tried
	// again); per-VM results are coalesced: only the latest of each VM
	// matters.
	d.Agent = agent.New(c.Bridge, log, d.reporter.Put)
	d.Agent.DataDir, d.Agent.Signatures, d.Agent.Hashes = c.DataDir, c.Signatures, c.Hashes
	if d.Agent.DataDir == "" {
		if c.DB == ":memory:" {
			return fail(errors.New("a daemon with an in-memory store needs a DataDir"))
		}
		d.Agent.DataDir = filepath.Join(filepath.Dir(c.DB), "data")
	}
	// Per-VM state and quarantine are the daemon's alone.
	if err := os.MkdirAll(d.Agent.DataDir, 0o700); err != nil {
		return fail(err)
	}
	if err := os.Chmod(d.Agent.DataDir, 0o700); err != nil {
		return fail(err)
	}
	if d.roots, err = hostpath.OpenRoots(c.ImageRoot, c.RunRoot, c.ShmRoot); err != nil {
		return fail(fmt.Errorf("host roots: %w", err))
	}
	d.Agent.Host = d.roots
	if d.Controller, err = controller.New(st, d.Bus, tok, log); err != nil {
		return fail(err)
	}
	d.Controller.Host = inventory.Host{Reserved: []string{c.Bridge.Name}, Roots: d.roots.Dirs()}
	d.Controller.DefaultHost = c.Node
	d.Bus.SetSink(d.Controller.Sink())
	if err := d.Agent.Start(ctx); err != nil {
		return fail(err)
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.reporter.Run(loops, d.Bus, log)
	}()
	go func() {
		defer d.wg.Done()
		if err := d.Agent.Follow(loops, d.Bus, c.Node, filepath.Join(d.Agent.DataDir, DesiredFile), d.reporter, followRetry); err != nil {
			log.Error("agent stopped", "err", err)
		}
	}()
	if err := d.Controller.Sync(ctx); err != nil {
		return fail(fmt.Errorf("publish stored policy: %w", err))
	}
	if err := d.Controller.AwaitHost(ctx, c.Node, startWait); err != nil {
		log.Error("this host does not enforce the stored policy yet", "err", err)
	}
	d.API = api.New(d.Controller, log)
	return d, nil
}

// followRetry is how often an agent tries a desired state that failed
// again; startWait bounds how long New waits for this host to apply the
// stored state.
const (
	followRetry = 5 * time.Second
	startWait   = 30 * time.Second
)

// DefaultNode is this machine's host name when it is a valid node name,
// else "local".
func DefaultNode() string {
	h, err := os.Hostname()
	if err != nil || !tenant.ValidName(h) {
		return "local"
	}
	return h
}

// Close stops the agent's services and closes the store; the switch keeps
// its flows (fail-secure).
func (d *Daemon) Close() {
	if d.stop != nil {
		d.stop()
	}
	d.wg.Wait()
	if d.Agent != nil {
		d.Agent.Close()
	}
	if d.roots != nil {
		d.roots.Close()
	}
	d.Store.Close()
}

// pruneEvery is how often the event history's retention is enforced;
// republishEvery how often desired states a host missed are published
// again.
const (
	pruneEvery     = time.Minute
	republishEvery = 5 * time.Second
)

// prune enforces the event retention once.
func (d *Daemon) prune(ctx context.Context, now time.Time) {
	var before time.Time
	if d.cfg.EventMaxAge > 0 {
		before = now.Add(-d.cfg.EventMaxAge)
	}
	if before.IsZero() && d.cfg.EventMaxCount <= 0 {
		return
	}
	n, err := d.Store.PruneEvents(ctx, before, d.cfg.EventMaxCount)
	if err != nil && ctx.Err() == nil {
		d.log.Error("event retention", "err", err)
	} else if n > 0 {
		d.log.Info("event retention", "pruned", n)
	}
}

// Run enforces the event retention, publishes again what a host missed,
// and reconciles the switch every interval (and whenever its flow table
// changes) until ctx ends.
func (d *Daemon) Run(ctx context.Context, reconcile time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(3)
	go func() {
		defer wg.Done()
		t := time.NewTicker(pruneEvery)
		defer t.Stop()
		for {
			d.prune(ctx, time.Now())
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(republishEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := d.Controller.Republish(ctx, false); err != nil && ctx.Err() == nil {
				d.log.Error("publish desired states", "err", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		d.Agent.Run(ctx, reconcile)
	}()
}

// Serve answers the API on listen until ctx ends, running the daemon
// meanwhile, then shuts the server down gracefully.
func (d *Daemon) Serve(ctx context.Context, listen string, reconcile time.Duration) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { d.Run(ctx, reconcile); close(done) }()
	defer func() { cancel(); <-done }()
	srv := &http.Server{Handler: d.API, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	d.log.Info("secaasd listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancelShut := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShut()
	return srv.Shutdown(shut)
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
