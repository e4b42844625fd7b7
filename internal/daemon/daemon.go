package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"secaas/internal/agent"
	"secaas/internal/api"
	"secaas/internal/controller"
	"secaas/internal/ext4"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/ovs"
	"secaas/internal/store"
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
}

// Daemon is a wired secaasd: store, agent, controller and API.
type Daemon struct {
	Store      *store.Store
	Agent      *agent.Agent
	Controller *controller.Controller
	API        *api.Server
	roots      *hostpath.Roots
	cfg        Config
	log        *slog.Logger
	events     *queue
	results    *latest
}

// localNode is this host's agent behind the node contract: its HyperAV
// results cross as JSON documents, its errors as the contract's.
type localNode struct{ *agent.Agent }

var (
	_ node.Node    = localNode{}
	_ node.Planner = localNode{}
	_ node.AV      = localNode{}
)

func nodeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ext4.ErrNotFound):
		return fmt.Errorf("%w: %v", node.ErrNotFound, err)
	case errors.Is(err, agent.ErrNoAV):
		return fmt.Errorf("%w: %v", node.ErrNoService, err)
	}
	return err
}

func doc(v any, err error) (json.RawMessage, error) {
	if err != nil {
		return nil, nodeErr(err)
	}
	return json.Marshal(v)
}

func (n localNode) AVScan(ctx context.Context, tid int, vm, path string) (json.RawMessage, error) {
	return doc(n.Agent.AVScan(ctx, tid, vm, path))
}

func (n localNode) AVIsolate(ctx context.Context, tid int, vm, path string) (json.RawMessage, error) {
	return doc(n.Agent.AVIsolate(ctx, tid, vm, path))
}

func (n localNode) AVStatus(tid int, vm string) (json.RawMessage, time.Time, error) {
	st, err := n.Agent.AVStatus(tid, vm)
	if err != nil {
		return nil, time.Time{}, nodeErr(err)
	}
	b, err := json.Marshal(st)
	return b, st.At, err
}

// New opens the store, makes the agent for the bridge (ensuring it, but
// installing nothing) and the controller over both, and applies the stored
// state: the switch changes only where it differs from it.
func New(ctx context.Context, c Config) (*Daemon, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
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
	d := &Daemon{Store: st, cfg: c, log: log, events: &queue{ready: make(chan struct{}, 1)}, results: newLatest()}
	fail := func(err error) (*Daemon, error) {
		d.Close()
		return nil, err
	}
	// Node events travel through a queue that never blocks the agent (it
	// may report while the controller holds the store's write transaction
	// and waits for the agent) and never drops one: they are stored in
	// batches, and a batch the store refuses is tried again. Per-VM
	// results (one per cycle) are coalesced instead: only the latest of
	// each VM matters.
	d.Agent = agent.New(c.Bridge, log, func(e agent.Event) {
		if e.Data != nil {
			d.results.put(e)
			return
		}
		d.events.put(store.Event{Tenant: e.Tenant, Kind: e.Kind, Subject: e.Subject, Detail: e.Detail})
	})
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
	if d.Controller, err = controller.New(st, localNode{d.Agent}, tok, log); err != nil {
		return fail(err)
	}
	d.Controller.Host = inventory.Host{Reserved: []string{c.Bridge.Name}, Roots: d.roots.Dirs()}
	if err := d.Agent.Start(ctx); err != nil {
		return fail(err)
	}
	if err := d.Controller.Sync(ctx); err != nil {
		return fail(fmt.Errorf("apply stored policy: %w", err))
	}
	d.API = api.New(d.Controller, log)
	return d, nil
}

// Close stops the agent's services and closes the store; the switch keeps
// its flows (fail-secure).
func (d *Daemon) Close() {
	if d.Agent != nil {
		d.Agent.Close()
	}
	if d.roots != nil {
		d.roots.Close()
	}
	d.Store.Close()
}

// pruneEvery is how often the event history's retention is enforced.
const pruneEvery = time.Minute

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

// Run records the node's events and results, enforces the event
// retention, and reconciles the switch every interval (and whenever its
// flow table changes) until ctx ends.
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
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.events.ready:
				d.record(ctx)
			case <-d.results.ready:
				for _, e := range d.results.take() {
					d.Controller.RecordNodeResult(ctx, store.Result{TID: e.TID, VM: e.VM, Kind: strings.TrimSuffix(e.Kind, ".report"), Tenant: e.Tenant, Doc: e.Data})
				}
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

// record stores the queued events, a batch at a time, until the queue is
// empty; a batch the store refuses stays queued and is tried again after
// a pause that grows to 5 s.
func (d *Daemon) record(ctx context.Context) {
	drain(ctx, d.events, d.Controller.RecordNodeEvents, d.log)
}

// drain stores q's events with save until q is empty or ctx ends; a
// batch save refuses stays queued and is tried again.
func drain(ctx context.Context, q *queue, save func(context.Context, []store.Event) error, log *slog.Logger) {
	pause := 100 * time.Millisecond
	for {
		batch := q.peek(maxBatch)
		if len(batch) == 0 {
			return
		}
		if err := save(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("record events: will try again", "events", q.len(), "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
			continue
		}
		q.drop(len(batch))
		pause = 100 * time.Millisecond
	}
}

// maxBatch bounds the events stored in one transaction.
const maxBatch = 500

// queue is a FIFO of events that never blocks the producer.
type queue struct {
	mu    sync.Mutex // guards evs
	evs   []store.Event
	ready chan struct{} // one pending signal: there are events
}

func (q *queue) put(e store.Event) {
	q.mu.Lock()
	q.evs = append(q.evs, e)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// peek returns up to n of the oldest events, leaving them queued.
func (q *queue) peek(n int) []store.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.evs[:min(n, len(q.evs))])
}

// drop removes the n oldest events (stored).
func (q *queue) drop(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.evs = q.evs[n:]
	if len(q.evs) == 0 {
		q.evs = nil // let the backing array go
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.evs)
}

// latest keeps the newest per-VM result of each kind until it is stored.
type latest struct {
	mu    sync.Mutex // guards m
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
