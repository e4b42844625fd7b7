package controller

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// ErrPending: the change is stored, but a host it goes to has not yet
// reported it applied within the wait.
var ErrPending = errors.New("pending")

// placement says on which hosts a domain runs: the hosts of the ports it
// binds (a port without a host record is on the default host); a domain
// that binds no port is on the default host.
func placement(d tenant.Domain, ports inventory.Ports, def string) []string {
	var hosts []string
	add := func(port string) {
		h := def
		if p, ok := ports[port]; ok {
			h = p.HostOr(def)
		}
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, s := range d.Subnets {
		for _, vm := range s.VMs {
			add(vm.Port)
		}
	}
	for _, u := range d.Uplinks {
		add(u)
	}
	if len(hosts) == 0 {
		hosts = append(hosts, def)
	}
	slices.Sort(hosts)
	return hosts
}

// desiredStates computes every host's desired state at generation g:
// each known host gets the domains placed on it (whole) and its ports'
// records; a host with none gets an empty state, which clears it.
func (c *Controller) desiredStates(all []tenant.Domain, ports inventory.Ports, known []string, g int64) map[string]node.Desired {
	out := map[string]node.Desired{}
	get := func(h string) node.Desired {
		d, ok := out[h]
		if !ok {
			d = node.Desired{Host: h, Generation: g, Domains: []tenant.Domain{}, Ports: inventory.Ports{}}
		}
		return d
	}
	for _, h := range append(known, c.DefaultHost) {
		out[h] = get(h)
	}
	for name, p := range ports {
		h := p.HostOr(c.DefaultHost)
		d := get(h)
		d.Ports[name] = p
		out[h] = d
	}
	for _, dom := range all {
		for _, h := range placement(dom, ports, c.DefaultHost) {
			d := get(h)
			d.Domains = append(d.Domains, dom)
			out[h] = d
		}
		// A port no record names is on the default host: say so, so that
		// the agent there knows the VM is its own (its per-VM services
		// run there), with no host resources.
		def := get(c.DefaultHost)
		bind := func(port string, uplink bool) {
			if _, ok := ports[port]; !ok {
				def.Ports[port] = inventory.Port{Name: port, Tenant: dom.Tenant, Uplink: uplink}
			}
		}
		for _, s := range dom.Subnets {
			for _, vm := range s.VMs {
				bind(vm.Port, false)
			}
		}
		for _, u := range dom.Uplinks {
			bind(u, true)
		}
		out[c.DefaultHost] = def
	}
	// Each host that tunnels learns where the VMs of its domains that run
	// elsewhere are: the endpoint of their host.
	eps := c.endpoints()
	for h, d := range out {
		if !eps[h].IsValid() {
			continue
		}
		for _, dom := range d.Domains {
			for _, s := range dom.Subnets {
				for _, vm := range s.VMs {
					at := c.DefaultHost
					if p, ok := ports[vm.Port]; ok {
						at = p.HostOr(c.DefaultHost)
					}
					if e := eps[at]; at != h && e.IsValid() {
						if d.Remote == nil {
							d.Remote = map[string]netip.Addr{}
						}
						d.Remote[vm.Port] = e
					}
				}
			}
		}
		out[h] = d
	}
	return out
}

// endpoints are the tunnel endpoints the hosts last reported.
func (c *Controller) endpoints() map[string]netip.Addr {
	c.smu.Lock()
	defer c.smu.Unlock()
	eps := map[string]netip.Addr{}
	for h, s := range c.status {
		if a, err := netip.ParseAddr(s.Endpoint); err == nil {
			eps[h] = a
		}
	}
	return eps
}

// digest identifies a desired state's content (not its generation).
func digest(d node.Desired) [32]byte {
	d.Generation = 0
	b, _ := json.Marshal(d)
	return sha256.Sum256(b)
}

// publishLocked computes every host's desired state at generation g and
// publishes those that differ from what was last published to each (all
// of them with force), recording the publication. It returns the hosts
// whose desired state changed. A host the transport cannot reach now gets
// its state when the controller publishes again (Republish). Called with
// c.mu held, after the change is committed: no node I/O happens inside a
// transaction.
func (c *Controller) publishLocked(ctx context.Context, all []tenant.Domain, ports inventory.Ports, g int64, force bool, bump func() (int64, error)) []string {
	var known []string
	if err := c.st.View(ctx, func(tx *store.Tx) error {
		hs, err := tx.Hosts()
		for _, h := range hs {
			known = append(known, h.Name)
		}
		return err
	}); err != nil {
		c.log.Error("list hosts", "err", err)
	}
	states := c.desiredStates(all, ports, known, g)
	sums := make(map[string][32]byte, len(states)) // the digest ignores the generation
	for h, d := range states {
		sums[h] = digest(d)
	}
	if bump != nil {
		// A host's state changed with no change committed (a host
		// reported a new tunnel endpoint): that needs a generation of its
		// own, for agents ignore a state at the generation they have.
		for h := range states {
			if old, ok := c.sent[h]; ok && old != sums[h] {
				ng, err := bump()
				if err != nil {
					c.log.Error("new generation", "err", err)
					return nil
				}
				for h, d := range states {
					d.Generation = ng
					states[h] = d
				}
				g = ng
				break
			}
		}
	}
	var changed []string
	for h, d := range states {
		sum := sums[h]
		if old, ok := c.sent[h]; ok && old == sum && !force {
			continue
		}
		changed = append(changed, h)
		if err := c.st.Update(ctx, func(tx *store.Tx) error { return tx.PublishedTo(h, g) }); err != nil {
			c.log.Error("record publication", "host", h, "err", err)
		}
		if err := c.fleet.Publish(ctx, d); err != nil {
			c.log.Error("publish desired state: will try again", "host", h, "generation", g, "err", err)
			delete(c.sent, h)
			continue
		}
		c.sent[h] = sum
	}
	slices.Sort(changed)
	return changed
}

// Republish publishes the hosts' desired states: all of them at a new
// generation at start-up (force); otherwise, at the current generation,
// those a publication failed to reach.
func (c *Controller) Republish(ctx context.Context, force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var all []tenant.Domain
	var ports []inventory.Port
	var g int64
	// A forced publication (a controller's start) gets a generation of its
	// own, so that statuses hosts reported before cannot answer for it.
	do := c.st.View
	if force {
		do = c.st.Update
	}
	if err := do(ctx, func(tx *store.Tx) (err error) {
		if all, err = tx.Domains(); err != nil {
			return err
		}
		if ports, err = tx.Ports(); err != nil {
			return err
		}
		if force {
			g, err = tx.NextGeneration()
		} else {
			g, err = tx.Generation()
		}
		return err
	}); err != nil {
		return err
	}
	var bump func() (int64, error)
	if !force {
		bump = func() (g int64, err error) {
			err = c.st.Update(ctx, func(tx *store.Tx) error { g, err = tx.NextGeneration(); return err })
			return g, err
		}
	}
	c.publishLocked(ctx, all, inventory.Index(ports), g, force, bump)
	return nil
}

type waitKey struct{}

// WithWait makes a change made with ctx wait up to d for the hosts it
// goes to to report it applied (0: do not wait). Without it a change
// waits DefaultWait.
func WithWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, waitKey{}, d)
}

// DefaultWait is how long a change waits for its hosts by default.
const DefaultWait = 30 * time.Second

func waitFor(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(waitKey{}).(time.Duration); ok {
		return d
	}
	return DefaultWait
}

// awaitApplied waits until each host has reported generation g or newer.
// A host that tried g and failed makes it ErrApply with the host's
// message (the change stays stored: the host keeps enforcing what it had
// and tries again); one that has not answered within the wait makes it
// ErrPending.
func (c *Controller) awaitApplied(ctx context.Context, hosts []string, g int64) error {
	wait := waitFor(ctx)
	if len(hosts) == 0 {
		return nil
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		c.smu.Lock()
		changed := c.statusChanged
		var failed, pending []string
		for _, h := range hosts {
			s, ok := c.status[h]
			switch {
			case !ok || s.Generation < g:
				pending = append(pending, h)
			case s.Applied < g:
				failed = append(failed, fmt.Sprintf("host %s: %s", h, s.Error))
			}
		}
		c.smu.Unlock()
		if len(failed) > 0 {
			return fmt.Errorf("stored as generation %d, but %s (the host keeps enforcing its previous state and tries again; change the policy to fix it): %w",
				g, strings.Join(failed, "; "), ErrApply)
		}
		if len(pending) == 0 {
			return nil
		}
		if timeout == nil {
			return fmt.Errorf("stored as generation %d; not yet applied on %s: %w", g, strings.Join(pending, ", "), ErrPending)
		}
		select {
		case <-changed:
		case <-timeout:
			timeout = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Sink is where the hosts' reports go: statuses, events and results.
func (c *Controller) Sink() node.Sink { return sink{c} }

type sink struct{ c *Controller }

// Status records a status a host reported.
func (k sink) Status(ctx context.Context, s node.Status) error {
	c := k.c
	if !tenant.ValidName(s.Host) {
		return fmt.Errorf("status from an unnamed host %q", s.Host)
	}
	doc, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := c.st.Update(ctx, func(tx *store.Tx) error { return tx.PutHostStatus(s.Host, doc) }); err != nil {
		return err
	}
	c.smu.Lock()
	old, ok := c.status[s.Host]
	if !ok || s.Generation >= old.Generation || s.Time.After(old.Time) {
		c.status[s.Host] = s
	}
	moved := s.Endpoint != old.Endpoint
	close(c.statusChanged)
	c.statusChanged = make(chan struct{})
	c.smu.Unlock()
	if moved {
		// The other hosts' tunnels to this one change: publish now rather
		// than at the next periodic round.
		go func() {
			if err := c.Republish(context.WithoutCancel(ctx), false); err != nil {
				c.log.Error("republish after a host's endpoint changed", "host", s.Host, "err", err)
			}
		}()
	}
	return nil
}

// Events stores events hosts reported: all or none, each once however
// often it is delivered.
func (k sink) Events(ctx context.Context, evs []node.Event) error {
	return k.c.st.Update(ctx, func(tx *store.Tx) error {
		for _, e := range evs {
			se := store.Event{Tenant: e.Tenant, Kind: e.Kind, Subject: e.Subject, Detail: e.Detail, Host: e.Host}
			if e.Seq != 0 {
				se.Origin = e.Host + "/" + strconv.FormatUint(e.Seq, 10)
			}
			if _, err := tx.AddEvent(se); err != nil {
				return err
			}
		}
		return nil
	})
}

// Result stores the latest result a host reported for a VM.
func (k sink) Result(ctx context.Context, r node.Result) error {
	return k.c.st.Update(ctx, func(tx *store.Tx) error {
		return tx.PutResult(store.Result{TID: r.TID, VM: r.VM, Kind: r.Kind, Tenant: r.Tenant, Doc: r.Doc})
	})
}

// loadStatus reads the hosts' last reported statuses (at start-up).
func (c *Controller) loadStatus(ctx context.Context) error {
	var hs []store.Host
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { hs, err = tx.Hosts(); return err }); err != nil {
		return err
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, h := range hs {
		var s node.Status
		if len(h.Status) > 0 && json.Unmarshal(h.Status, &s) == nil {
			c.status[h.Name] = s
		}
	}
	return nil
}

// HostView is a host as the API shows it.
type HostView struct {
	Name string `json:"name"`
	// Published: the generation of the desired state last sent to it;
	// Generation: the newest it has seen; Applied: the one it enforces.
	Published  int64  `json:"published"`
	Generation int64  `json:"generation"`
	Applied    int64  `json:"applied"`
	State      string `json:"state"` // applied, pending or failed
	Error      string `json:"error,omitempty"`
	// Endpoint: the host's tunnel endpoint, for domains that span hosts.
	Endpoint string    `json:"endpoint,omitempty"`
	SeenAt   time.Time `json:"seen_at,omitzero"`
}

// Hosts lists the hosts (admin).
func (c *Controller) Hosts(ctx context.Context, who Caller) ([]HostView, error) {
	if !who.Admin {
		return nil, ErrForbidden
	}
	var hs []store.Host
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { hs, err = tx.Hosts(); return err }); err != nil {
		return nil, err
	}
	out := []HostView{}
	for _, h := range hs {
		v := HostView{Name: h.Name, Published: h.Published, SeenAt: h.SeenAt, State: node.Pending}
		var s node.Status
		if len(h.Status) > 0 && json.Unmarshal(h.Status, &s) == nil {
			v.Generation, v.Applied, v.Error, v.Endpoint = s.Generation, s.Applied, s.Error, s.Endpoint
			switch {
			case s.Generation >= h.Published && s.Applied >= h.Published:
				v.State = node.Applied
			case s.Generation >= h.Published:
				v.State = node.Failed
			}
		}
		out = append(out, v)
	}
	return out, nil
}

// HostStatus is a domain's state on one host.
type HostStatus struct {
	Host     string `json:"host"`
	State    string `json:"state"`
	Revision int    `json:"revision,omitempty"` // the revision the host enforces
	Message  string `json:"message,omitempty"`
}

// DomainStatus is a domain's state across its hosts, like Kubernetes'
// observedGeneration: applied when every host it is placed on enforces
// its current revision, failed when one refused it, else pending.
type DomainStatus struct {
	TID      int          `json:"tid"`
	Revision int          `json:"revision"`
	State    string       `json:"state"`
	Hosts    []HostStatus `json:"hosts"`
}

// DomainStatus reports where a domain of the caller's is applied.
func (c *Controller) DomainStatus(ctx context.Context, who Caller, tid int) (DomainStatus, error) {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return DomainStatus{}, err
	}
	var ports []inventory.Port
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { ports, err = tx.Ports(); return err }); err != nil {
		return DomainStatus{}, err
	}
	out := DomainStatus{TID: tid, Revision: d.Revision, State: node.Applied, Hosts: []HostStatus{}}
	id := strconv.Itoa(tid)
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, h := range placement(d, inventory.Index(ports), c.DefaultHost) {
		hs := HostStatus{Host: h, State: node.Pending}
		for _, o := range c.status[h].Objects {
			if o.Kind != "domain" || o.ID != id {
				continue
			}
			switch {
			case o.Revision == d.Revision:
				hs.State, hs.Revision, hs.Message = o.State, o.Revision, o.Message
			case o.State == node.Applied:
				hs.Revision = o.Revision // an older revision is enforced there
			}
		}
		if hs.Message != "" && !who.Admin {
			hs.Message = "refused by the host (the operator sees why)"
		}
		switch {
		case hs.State == node.Failed:
			out.State = node.Failed
		case hs.State == node.Pending && out.State != node.Failed:
			out.State = node.Pending
		}
		out.Hosts = append(out.Hosts, hs)
	}
	return out, nil
}

// AwaitHost waits up to wait for host to report the generation last
// published to it: nil when it enforces it, ErrApply when it refused it,
// ErrPending when it has not answered.
func (c *Controller) AwaitHost(ctx context.Context, host string, wait time.Duration) error {
	var g int64
	if err := c.st.View(ctx, func(tx *store.Tx) error {
		hs, err := tx.Hosts()
		for _, h := range hs {
			if h.Name == host {
				g = h.Published
			}
		}
		return err
	}); err != nil {
		return err
	}
	return c.awaitApplied(WithWait(ctx, wait), []string{host}, g)
}
