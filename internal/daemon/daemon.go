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
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"secaas/internal/agent"
	"secaas/internal/api"
	"secaas/internal/bus"
	"secaas/internal/controller"
	"secaas/internal/detect"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/ovs"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// Roles a daemon runs.
const (
	RoleAll        = "all"        // controller and agent, one host (the default)
	RoleController = "controller" // API, store, compilation, events; embeds NATS unless given one
	RoleAgent      = "agent"      // everything that touches this hypervisor host
)

// Config is what secaasd is told.
type Config struct {
	// Role: RoleAll (default), RoleController or RoleAgent.
	Role       string
	DB         string // SQLite database path (":memory:" for a throwaway store)
	Bridge     *ovs.Bridge
	AdminToken string // the admin token itself, or
	TokenFile  string // the file that holds it (created with a random token if missing)
	DataDir    string // per-VM state, the node's clamd, the bus's data (default: DB's directory/data)
	Signatures string // extra clamd signatures
	Hashes     string // SHA-256 list of known-bad files
	// Roots beneath which the VMs' host resources must lie.
	ImageRoot, RunRoot, ShmRoot string
	// Event retention: events older than EventMaxAge go, and all but the
	// newest EventMaxCount (0: no limit of that kind).
	EventMaxAge   time.Duration
	EventMaxCount int
	Log           *slog.Logger
	// Node is this host's name in the fleet (default: DefaultNode); the
	// controller's default host too.
	Node string
	// The bus. Empty BusURL: RoleAll runs in process (unless BusListen is
	// set), RoleController embeds a NATS server on BusListen (its data
	// under DataDir/nats). RoleAgent needs BusURL. The token admits
	// clients (BusToken, or BusTokenFile, created if missing).
	BusURL, BusListen      string
	BusToken, BusTokenFile string
	// TunnelIP is an agent's VXLAN endpoint, for domains that span hosts
	// (unset: none).
	TunnelIP netip.Addr
	// ModelDir holds the trained NAD models that policies name.
	ModelDir string
	// KMonObject is the compiled syscall monitor an agent injects (secaas
	// kmon build; unset: no syscall monitoring on this host).
	KMonObject string
}

// Daemon is a wired secaasd: store, controller and API, the agent, and
// the bus between them; an agent has no store, controller or API, a
// controller no agent.
type Daemon struct {
	Store      *store.Store
	Agent      *agent.Agent
	Controller *controller.Controller
	API        *api.Server
	// Node is this host's name in the fleet.
	Node string
	// BusURL is where the NATS bus is ("" in process).
	BusURL   string
	local    *bus.Local
	nats     *bus.NATS
	server   *bus.Server
	reporter *agent.Reporter
	roots    *hostpath.Roots
	cfg      Config
	log      *slog.Logger
	loops    context.Context    // the loops' context: Close ends it, and with it Run
	stop     context.CancelFunc // ends the loops New starts
	wg       sync.WaitGroup
}

// DesiredFile is where an agent persists its last desired state, in its
// data directory.
const DesiredFile = "desired.json"

// New wires the daemon for its role. A controller opens the store and
// starts receiving the hosts' reports; an agent ensures its bridge
// (installing nothing) and starts following its desired state, first
// the one it persisted, so a restart changes the switch only where the
// state moved on; then the controller publishes the stored state. With
// both roles New returns once this host enforces it (or says why not).
func New(ctx context.Context, c Config) (*Daemon, error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if c.Role == "" {
		c.Role = RoleAll
	}
	if c.Role != RoleAll && c.Role != RoleController && c.Role != RoleAgent {
		return nil, fmt.Errorf("role %q: all, controller or agent", c.Role)
	}
	if c.Node == "" {
		c.Node = DefaultNode()
	}
	if !tenant.ValidName(c.Node) {
		return nil, fmt.Errorf("node name %q: 1-63 letters, digits, '.', '_' or '-'", c.Node)
	}
	ctl, agt := c.Role != RoleAgent, c.Role != RoleController
	if c.DataDir == "" {
		if c.DB == ":memory:" || c.DB == "" || store.IsPostgres(c.DB) {
			return nil, errors.New("a daemon whose store is in memory or in PostgreSQL needs a data directory (--data-dir)")
		}
		c.DataDir = filepath.Join(filepath.Dir(c.DB), "data")
	}
	// Per-VM state, quarantine and the bus's data are the daemon's alone.
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	loops, stop := context.WithCancel(context.WithoutCancel(ctx))
	d := &Daemon{Node: c.Node, cfg: c, log: log, loops: loops, stop: stop}
	fail := func(err error) (*Daemon, error) {
		d.Close()
		return nil, err
	}
	var fleet node.Fleet
	var link node.Link
	if err := d.openBus(ctx, c); err != nil {
		return fail(err)
	}
	if d.nats != nil {
		fleet, link = d.nats, d.nats
	} else {
		d.local = bus.NewLocal()
		fleet, link = d.local, d.local
	}
	if ctl {
		if err := d.openController(ctx, c, fleet, log); err != nil {
			return fail(err)
		}
		if d.local != nil {
			d.local.SetSink(d.Controller.Sink())
		} else {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				if err := d.nats.Receive(loops, d.Controller.Sink()); err != nil {
					log.Error("receiving reports stopped", "err", err)
				}
			}()
		}
	}
	if agt {
		if err := d.openAgent(ctx, loops, c, link, log); err != nil {
			return fail(err)
		}
	}
	if ctl {
		if err := d.Controller.Sync(ctx); err != nil {
			return fail(fmt.Errorf("publish stored policy: %w", err))
		}
	}
	if ctl && agt {
		if err := d.Controller.AwaitHost(ctx, c.Node, startWait); err != nil {
			log.Error("this host does not enforce the stored policy yet", "err", err)
		}
	}
	return d, nil
}

// openBus starts or joins the NATS bus when the role and config ask for
// one.
func (d *Daemon) openBus(ctx context.Context, c Config) error {
	url := c.BusURL
	if url == "" && (c.Role == RoleController || (c.Role == RoleAll && c.BusListen != "")) {
		listen := c.BusListen
		if listen == "" {
			listen = "127.0.0.1:4222"
		}
		tok, err := secret(c.BusToken, c.BusTokenFile)
		if err != nil {
			return fmt.Errorf("bus token: %w", err)
		}
		if d.server, err = bus.StartServer(listen, filepath.Join(c.DataDir, "nats"), tok); err != nil {
			return err
		}
		url = d.server.URL()
		d.log.Info("embedded NATS server", "url", url)
	}
	if url == "" {
		if c.Role == RoleAgent {
			return errors.New("an agent needs the controller's bus (--bus nats://HOST:4222)")
		}
		return nil
	}
	tok, err := secret(c.BusToken, c.BusTokenFile)
	if err != nil {
		return fmt.Errorf("bus token: %w", err)
	}
	name := c.Node
	if c.Role == RoleController {
		name = "controller"
	}
	d.BusURL = url
	d.nats, err = bus.Dial(ctx, url, tok, name, d.log)
	return err
}

func (d *Daemon) openController(ctx context.Context, c Config, fleet node.Fleet, log *slog.Logger) error {
	tok, err := secret(c.AdminToken, c.TokenFile)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if c.DB != ":memory:" && !store.IsPostgres(c.DB) {
		if err := os.MkdirAll(filepath.Dir(c.DB), 0o700); err != nil {
			return err
		}
	}
	if d.Store, err = store.Open(ctx, c.DB); err != nil {
		return err
	}
	if d.Controller, err = controller.New(d.Store, fleet, tok, log); err != nil {
		return err
	}
	d.Controller.CheckNAD = detect.CheckPolicy
	h := inventory.Host{}
	if c.Bridge != nil {
		h.Reserved = []string{c.Bridge.Name}
	}
	for _, r := range []string{c.ImageRoot, c.RunRoot, c.ShmRoot} {
		h.Roots = append(h.Roots, filepath.Clean(r))
	}
	d.Controller.Host = h
	d.Controller.DefaultHost = c.Node
	d.API = api.New(d.Controller, log)
	return nil
}

func (d *Daemon) openAgent(ctx, loops context.Context, c Config, link node.Link, log *slog.Logger) error {
	if c.Bridge == nil {
		return errors.New("an agent needs a bridge")
	}
	// The agent's reports travel through a reporter that never blocks the
	// agent and never drops an event (a batch the bus or store refuses is
	// tried again); per-VM results are coalesced: only the latest of each
	// VM matters.
	d.reporter = agent.NewReporter(c.Node)
	d.Agent = agent.New(c.Bridge, log, d.reporter.Put)
	d.Agent.DataDir, d.Agent.Signatures, d.Agent.Hashes = c.DataDir, c.Signatures, c.Hashes
	d.Agent.TunnelIP, d.Agent.KMonObject, d.Agent.ModelDir = c.TunnelIP, c.KMonObject, c.ModelDir
	var err error
	if d.roots, err = hostpath.OpenRoots(c.ImageRoot, c.RunRoot, c.ShmRoot); err != nil {
		return fmt.Errorf("host roots: %w", err)
	}
	d.Agent.Host = d.roots
	if err := d.Agent.Start(ctx); err != nil {
		return err
	}
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.reporter.Run(loops, link, log)
	}()
	go func() {
		defer d.wg.Done()
		if err := d.Agent.Follow(loops, link, c.Node, filepath.Join(c.DataDir, DesiredFile), d.reporter, followRetry); err != nil {
			log.Error("agent stopped", "err", err)
		}
	}()
	return nil
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
	d.stop()
	d.wg.Wait()
	if d.Agent != nil {
		d.Agent.Close()
	}
	if d.roots != nil {
		d.roots.Close()
	}
	if d.nats != nil {
		d.nats.Close()
	}
	if d.server != nil {
		d.server.Close()
	}
	if d.Store != nil {
		d.Store.Close()
	}
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

// Run, until ctx ends: a controller enforces the event retention and
// publishes again what a host missed; an agent reconciles the switch
// every interval (and whenever its flow table changes).
func (d *Daemon) Run(ctx context.Context, reconcile time.Duration) {
	// A closed daemon runs nothing: two agents must never fight over one
	// switch.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(d.loops, cancel)()
	var wg sync.WaitGroup
	defer wg.Wait()
	if d.Agent != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.Agent.Run(ctx, reconcile)
		}()
	}
	if d.Controller == nil {
		return
	}
	wg.Add(2)
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
}

// Serve answers the API on listen (a controller) until ctx ends, running
// the daemon meanwhile, then shuts the server down gracefully.
func (d *Daemon) Serve(ctx context.Context, listen string, reconcile time.Duration) error {
	if d.API == nil {
		d.log.Info("secaas agent running", "node", d.Node, "bus", d.BusURL)
		d.Run(ctx, reconcile)
		return nil
	}
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

// secret is tok, or the token in file (created with a random token if
// missing).
func secret(tok, file string) (string, error) {
	if tok != "" {
		return tok, nil
	}
	if file == "" {
		return "", errors.New("no token and no token file")
	}
	return tokenFile(file)
}

func tokenFile(path string) (string, error) {
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

// Report hands an event to this host's agent's reporter as if the agent
// had seen it (benchmarks and tests of the event path); a daemon without
// an agent ignores it.
func (d *Daemon) Report(e agent.Event) {
	if d.reporter != nil {
		d.reporter.Put(e)
	}
}
