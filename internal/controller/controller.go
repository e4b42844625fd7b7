package controller

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// Sentinel errors; package api maps them to HTTP statuses.
var (
	ErrUnauthorized = errors.New("missing or unknown token")
	ErrForbidden    = errors.New("admin token required")
	ErrNotFound     = store.ErrNotFound
	ErrConflict     = store.ErrConflict
	ErrInvalid      = tenant.ErrInvalid
	// ErrApply: a host refused the change, which stays stored; the host
	// keeps enforcing its previous state.
	ErrApply = errors.New("apply to switch")
	// ErrNode: the node could not do what was asked (e.g. a scan failed).
	ErrNode = errors.New("node")
	// ErrPrecondition: the change names a revision the domain is no longer at.
	ErrPrecondition = errors.New("precondition failed")
)

// Caller is an authenticated API client.
type Caller struct {
	Admin  bool
	Tenant string // set for tenant tokens
}

// Controller serialises policy changes over the store and publishes each
// host's desired state after they commit.
type Controller struct {
	st        *store.Store
	fleet     node.Fleet
	log       *slog.Logger
	adminHash string
	// Host is what inventory records are checked against: the bridge's
	// own port names and the roots host paths must lie beneath. Set
	// before use.
	Host inventory.Host
	// DefaultHost is the host of ports whose inventory record names none
	// (and of domains that bind no port). Set before use.
	DefaultHost string
	// CheckNAD, when set, checks a NAD policy's detector and model against
	// what the nodes run (the daemon wires package detect's registry in;
	// the control plane links no detector). Set before use.
	CheckNAD func(detector string, model bool) error

	mu   sync.Mutex          // serialises changes and their publication
	sent map[string][32]byte // per host: the desired state last published

	dmu  sync.Mutex       // guards docs
	docs map[int]docEntry // by TID: the latest document read

	smu           sync.Mutex // guards the two fields below
	status        map[string]node.Status
	statusChanged chan struct{} // closed and replaced on each status
}

// New returns a controller that publishes to fleet; adminToken must be
// non-empty.
func New(st *store.Store, fleet node.Fleet, adminToken string, log *slog.Logger) (*Controller, error) {
	if len(adminToken) < 16 {
		return nil, errors.New("controller: admin token must have at least 16 characters")
	}
	c := &Controller{st: st, fleet: fleet, log: log, adminHash: store.HashToken(adminToken), DefaultHost: "local",
		sent: map[string][32]byte{}, status: map[string]node.Status{}, statusChanged: make(chan struct{})}
	if err := c.loadStatus(context.Background()); err != nil {
		return nil, err
	}
	return c, nil
}

// Sync publishes every host's stored desired state (at start-up).
func (c *Controller) Sync(ctx context.Context) error { return c.Republish(ctx, true) }

// Authenticate maps a bearer token to a caller.
func (c *Controller) Authenticate(ctx context.Context, token string) (Caller, error) {
	if token == "" {
		return Caller{}, ErrUnauthorized
	}
	h := store.HashToken(token)
	if subtle.ConstantTimeCompare([]byte(h), []byte(c.adminHash)) == 1 {
		return Caller{Admin: true}, nil
	}
	var tn store.Tenant
	err := c.st.View(ctx, func(tx *store.Tx) (err error) { tn, err = tx.TenantByToken(h); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Caller{}, ErrUnauthorized
	}
	if err != nil {
		return Caller{}, err
	}
	return Caller{Tenant: tn.ID}, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func invalid(format string, a ...any) error {
	return &tenant.ValidationError{Problems: []string{fmt.Sprintf(format, a...)}}
}

// CreateTenant adds a tenant and returns its API token (shown only once).
func (c *Controller) CreateTenant(ctx context.Context, who Caller, id, name string) (store.Tenant, string, error) {
	if !who.Admin {
		return store.Tenant{}, "", ErrForbidden
	}
	if !tenant.ValidName(id) {
		return store.Tenant{}, "", invalid("tenant id %q: 1-63 letters, digits, '.', '_' or '-'", id)
	}
	if name == "" {
		name = id
	}
	tok := "st_" + randHex(24)
	var tn store.Tenant
	err := c.st.Update(ctx, func(tx *store.Tx) (err error) {
		if tn, err = tx.CreateTenant(id, name, store.HashToken(tok)); err != nil {
			return err
		}
		_, err = tx.AddEvent(store.Event{Tenant: id, Kind: "tenant.created", Subject: id})
		return err
	})
	return tn, tok, err
}

// Tenants lists tenants: all for the admin, itself for a tenant.
func (c *Controller) Tenants(ctx context.Context, who Caller) ([]store.Tenant, error) {
	var out []store.Tenant
	err := c.st.View(ctx, func(tx *store.Tx) error {
		if who.Admin {
			var err error
			out, err = tx.Tenants()
			return err
		}
		tn, err := tx.Tenant(who.Tenant)
		out = []store.Tenant{tn}
		return err
	})
	return out, err
}

// DeleteTenant removes a tenant that owns no domain.
func (c *Controller) DeleteTenant(ctx context.Context, who Caller, id string) error {
	if !who.Admin {
		return ErrForbidden
	}
	return c.st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteTenant(id); err != nil {
			return err
		}
		_, err := tx.AddEvent(store.Event{Tenant: id, Kind: "tenant.deleted", Subject: id})
		return err
	})
}

func owns(who Caller, d tenant.Domain) bool { return who.Admin || d.Tenant == who.Tenant }

// Domains lists the caller's domains.
func (c *Controller) Domains(ctx context.Context, who Caller) ([]tenant.Domain, error) {
	var all []tenant.Domain
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { all, err = tx.Domains(); return err }); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(d tenant.Domain) bool { return !owns(who, d) }), nil
}

// Domain returns one of the caller's domains. Another tenant's domain is
// reported as not found, never as forbidden.
func (c *Controller) Domain(ctx context.Context, who Caller, tid int) (tenant.Domain, error) {
	var d tenant.Domain
	err := c.st.View(ctx, func(tx *store.Tx) (err error) { d, err = tx.Domain(tid); return err })
	if err == nil && !owns(who, d) {
		err = fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	return d, err
}

// DomainDoc is Domain as its JSON document (indented, as the API sends
// it), with its revision. Documents are kept by their store stamp
// (revision and time of the write): a read of an unchanged domain costs
// one small query.
func (c *Controller) DomainDoc(ctx context.Context, who Caller, tid int) (int, []byte, error) {
	var owner, stamp string
	var rev int
	err := c.st.View(ctx, func(tx *store.Tx) (err error) { owner, rev, stamp, err = tx.DomainHead(tid); return err })
	if err == nil && !who.Admin && owner != who.Tenant {
		err = fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	if err != nil {
		return 0, nil, err
	}
	c.dmu.Lock()
	e, ok := c.docs[tid]
	c.dmu.Unlock()
	if ok && e.stamp == stamp {
		return rev, e.doc, nil
	}
	var d tenant.Domain
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { d, stamp, err = tx.DomainStamped(tid); return err }); err != nil {
		return 0, nil, err
	}
	if !owns(who, d) {
		return 0, nil, fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	doc, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return 0, nil, err
	}
	doc = append(doc, '\n')
	c.dmu.Lock()
	if c.docs == nil || len(c.docs) > 100_000 {
		c.docs = map[int]docEntry{}
	}
	c.docs[tid] = docEntry{stamp, doc}
	c.dmu.Unlock()
	return d.Revision, doc, nil
}

// docEntry is a domain's document as stored at a stamp.
type docEntry struct {
	stamp string
	doc   []byte
}

// change is one policy change: it edits the list of all domains in place
// and names the domain it touched (for events and error scoping).
type change func(all *[]tenant.Domain) (tenant.Domain, error)

// state is everything a change sees: all domains and the inventory.
type state struct {
	all   []tenant.Domain
	ports inventory.Ports
}

// transact runs fn in one store transaction over the whole state, under
// the controller's lock. When fn says the hosts need to know, the change
// gets the next generation; once it is committed, every host whose
// desired state it changes gets that state published, and transact waits
// (WithWait) for them to report it: ErrApply when a host refused it,
// ErrPending when one has not answered. No node I/O happens inside the
// transaction, and a failure before the commit changes nothing.
func (c *Controller) transact(ctx context.Context, fn func(tx *store.Tx, s *state) (publish bool, err error)) error {
	c.mu.Lock()
	var st *state
	var g int64
	publish := false
	err := c.st.Update(ctx, func(tx *store.Tx) error {
		all, err := tx.Domains()
		if err != nil {
			return err
		}
		list, err := tx.Ports()
		if err != nil {
			return err
		}
		st = &state{all: all, ports: inventory.Index(list)}
		if publish, err = fn(tx, st); err != nil || !publish {
			return err
		}
		// What goes to the hosts is what was stored, revisions included.
		revs, err := tx.Revisions()
		if err != nil {
			return err
		}
		for i := range st.all {
			st.all[i].Revision = revs[st.all[i].TID]
		}
		g, err = tx.NextGeneration()
		return err
	})
	if err != nil || !publish {
		c.mu.Unlock()
		return err
	}
	hosts := c.publishLocked(ctx, st.all, st.ports, g, false, nil)
	c.mu.Unlock()
	return c.awaitApplied(ctx, hosts, g)
}

// check validates a changed domain against the host: its ports leased to
// its tenant (a tenant binds only leased ports; the admin also unlisted
// ones) and its addressing.
func (c *Controller) check(who Caller, d tenant.Domain, ports inventory.Ports) error {
	if err := inventory.CheckDomain(d, ports, c.Host.Reserved, !who.Admin); err != nil {
		return err
	}
	return tenant.CheckAddressing(d)
}

// commit runs a change: validate everything, apply to the node, then
// commit; any failure leaves store and switch as they were.
func (c *Controller) commit(ctx context.Context, who Caller, kind string, ch change) (tenant.Domain, error) {
	var out tenant.Domain
	err := c.transact(ctx, func(tx *store.Tx, st *state) (bool, error) {
		revision := make(map[int]int, len(st.all))
		for _, d := range st.all {
			revision[d.TID] = d.Revision
		}
		d, err := ch(&st.all)
		if err != nil {
			return false, err
		}
		if want, ok := ifMatch(ctx); ok && revision[d.TID] != want {
			return false, fmt.Errorf("domain %d is at revision %d, not %d (someone changed it: read it again): %w", d.TID, revision[d.TID], want, ErrPrecondition)
		}
		out = d
		if _, err := tenant.NewNet(st.all); err != nil {
			return false, scopeError(who, d, err)
		}
		if !slices.ContainsFunc(st.all, func(x tenant.Domain) bool { return x.TID == d.TID }) {
			if err := tx.DeleteDomain(d.TID); err != nil {
				return false, err
			}
		} else {
			if err := c.check(who, d, st.ports); err != nil {
				return false, err
			}
			if out.Revision, err = tx.PutDomain(d); err != nil {
				return false, err
			}
		}
		_, err = tx.AddEvent(store.Event{Tenant: d.Tenant, Kind: kind, Subject: fmt.Sprintf("domain/%d", d.TID)})
		return err == nil, err
	})
	return out, err
}

// scopeError keeps a tenant from learning about other tenants' domains
// through cross-domain validation messages.
func scopeError(who Caller, d tenant.Domain, err error) error {
	var ve *tenant.ValidationError
	if who.Admin || !errors.As(err, &ve) {
		return err
	}
	mine := fmt.Sprintf("domain %q (tid %d)", d.Name, d.TID)
	var keep []string
	for _, p := range ve.Problems {
		if strings.HasPrefix(p, mine) {
			keep = append(keep, p)
		}
	}
	if len(keep) == 0 {
		keep = []string{fmt.Sprintf("%s: its tid or a switch port is already used by another domain", mine)}
	}
	return &tenant.ValidationError{Problems: keep}
}

// mine finds the caller's domain tid in all.
func mine(who Caller, all []tenant.Domain, tid int) (int, error) {
	for i, d := range all {
		if d.TID == tid && owns(who, d) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("domain %d: %w", tid, ErrNotFound)
}

// CreateDomain adds a domain. A tenant creates domains for itself; the
// admin names the tenant.
func (c *Controller) CreateDomain(ctx context.Context, who Caller, d tenant.Domain) (tenant.Domain, error) {
	if !who.Admin {
		if d.Tenant != "" && d.Tenant != who.Tenant {
			return tenant.Domain{}, invalid("tenant %q: a tenant token creates domains only for its own tenant", d.Tenant)
		}
		d.Tenant = who.Tenant
	}
	if d.Tenant == "" {
		return tenant.Domain{}, invalid("tenant is required")
	}
	fillIDs(&d)
	return c.commit(ctx, who, "domain.created", func(all *[]tenant.Domain) (tenant.Domain, error) {
		for _, x := range *all {
			if x.TID == d.TID {
				return d, fmt.Errorf("tid %d is already taken (constraint a): %w", d.TID, ErrConflict)
			}
		}
		*all = append(*all, d)
		return d, nil
	})
}

// ReplaceDomain replaces a domain document (tid and tenant stay).
func (c *Controller) ReplaceDomain(ctx context.Context, who Caller, tid int, d tenant.Domain) (tenant.Domain, error) {
	return c.commit(ctx, who, "domain.replaced", func(all *[]tenant.Domain) (tenant.Domain, error) {
		i, err := mine(who, *all, tid)
		if err != nil {
			return d, err
		}
		if d.TID != 0 && d.TID != tid {
			return d, invalid("tid %d in the body differs from %d in the path", d.TID, tid)
		}
		if d.Tenant != "" && d.Tenant != (*all)[i].Tenant {
			return d, invalid("a domain cannot change tenant")
		}
		if d.Revision != 0 && d.Revision != (*all)[i].Revision {
			return d, fmt.Errorf("domain %d is at revision %d, not %d (someone changed it: read it again): %w", tid, (*all)[i].Revision, d.Revision, ErrPrecondition)
		}
		d.TID, d.Tenant = tid, (*all)[i].Tenant
		fillIDs(&d)
		(*all)[i] = d
		return d, nil
	})
}

// DeleteDomain removes a domain.
func (c *Controller) DeleteDomain(ctx context.Context, who Caller, tid int) error {
	_, err := c.commit(ctx, who, "domain.deleted", func(all *[]tenant.Domain) (tenant.Domain, error) {
		i, err := mine(who, *all, tid)
		if err != nil {
			return tenant.Domain{}, err
		}
		d := (*all)[i]
		*all = slices.Delete(*all, i, i+1)
		return d, nil
	})
	return err
}

// edit applies fn to a deep copy of the caller's domain tid.
func (c *Controller) edit(ctx context.Context, who Caller, tid int, kind string, fn func(d *tenant.Domain) error) (tenant.Domain, error) {
	return c.commit(ctx, who, kind, func(all *[]tenant.Domain) (tenant.Domain, error) {
		i, err := mine(who, *all, tid)
		if err != nil {
			return tenant.Domain{}, err
		}
		d := clone((*all)[i])
		if err := fn(&d); err != nil {
			return d, err
		}
		(*all)[i] = d
		return d, nil
	})
}

func clone(d tenant.Domain) tenant.Domain {
	b, _ := json.Marshal(d)
	var out tenant.Domain
	json.Unmarshal(b, &out)
	return out
}

func subnetIndex(d *tenant.Domain, name string) (int, error) {
	for i := range d.Subnets {
		if d.Subnets[i].Name == name {
			return i, nil
		}
	}
	return -1, fmt.Errorf("subnet %q: %w", name, ErrNotFound)
}

// AddSubnet adds an empty subnet.
func (c *Controller) AddSubnet(ctx context.Context, who Caller, tid int, s tenant.Subnet) (tenant.Domain, error) {
	return c.edit(ctx, who, tid, "subnet.created", func(d *tenant.Domain) error {
		if _, err := subnetIndex(d, s.Name); err == nil {
			return fmt.Errorf("subnet %q already exists: %w", s.Name, ErrConflict)
		}
		d.Subnets = append(d.Subnets, s)
		fillIDs(d)
		return nil
	})
}

// DeleteSubnet removes a subnet with its VMs and ACRs.
func (c *Controller) DeleteSubnet(ctx context.Context, who Caller, tid int, name string) (tenant.Domain, error) {
	return c.edit(ctx, who, tid, "subnet.deleted", func(d *tenant.Domain) error {
		i, err := subnetIndex(d, name)
		if err != nil {
			return err
		}
		d.Subnets = slices.Delete(d.Subnets, i, i+1)
		return nil
	})
}

// AddVM adds a VM to a subnet (a UUID is generated when missing).
func (c *Controller) AddVM(ctx context.Context, who Caller, tid int, subnet string, vm tenant.VM) (tenant.VM, error) {
	if vm.UUID == "" {
		vm.UUID = newUUID()
	}
	_, err := c.edit(ctx, who, tid, "vm.created", func(d *tenant.Domain) error {
		i, err := subnetIndex(d, subnet)
		if err != nil {
			return err
		}
		d.Subnets[i].VMs = append(d.Subnets[i].VMs, vm)
		return nil
	})
	return vm, err
}

// DeleteVM removes a VM by name. ACRs that still name it make the change
// invalid (unknown VM), so the caller removes those first.
func (c *Controller) DeleteVM(ctx context.Context, who Caller, tid int, name string) error {
	_, err := c.edit(ctx, who, tid, "vm.deleted", func(d *tenant.Domain) error {
		si, vi, err := findVM(d, name)
		if err != nil {
			return err
		}
		d.Subnets[si].VMs = slices.Delete(d.Subnets[si].VMs, vi, vi+1)
		return nil
	})
	return err
}

// findVM locates a VM by name: its subnet and its index there.
func findVM(d *tenant.Domain, name string) (si, vi int, err error) {
	for si := range d.Subnets {
		for vi, vm := range d.Subnets[si].VMs {
			if vm.Name == name {
				return si, vi, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("vm %q: %w", name, ErrNotFound)
}

// SetNAD enables (p non-nil) or disables (nil) anomaly detection for a VM.
func (c *Controller) SetNAD(ctx context.Context, who Caller, tid int, vmName string, p *tenant.NADPolicy) error {
	if p != nil {
		_, _, name, err := p.Params()
		if err != nil {
			return invalid("%v", err)
		}
		// The detector must exist; the model file is the node's to load.
		if c.CheckNAD != nil {
			if err := c.CheckNAD(name, p.Model != ""); err != nil {
				return invalid("%v", err)
			}
		}
	}
	return c.setVMPolicy(ctx, who, tid, vmName, "nad", p == nil, func(vm *tenant.VM) { vm.NAD = p })
}

// SetVMI enables (p non-nil) or disables (nil) memory monitoring for a
// VM. Enabling needs the VM's RAM file in its port's inventory record.
func (c *Controller) SetVMI(ctx context.Context, who Caller, tid int, vmName string, p *tenant.VMIPolicy) error {
	if p != nil {
		if _, _, err := p.Params(); err != nil {
			return invalid("%v", err)
		}
		if err := c.needs(ctx, who, tid, vmName, "memory monitoring", func(r inventory.Port) bool { return r.Memory != "" }); err != nil {
			return err
		}
	}
	return c.setVMPolicy(ctx, who, tid, vmName, "vmi", p == nil, func(vm *tenant.VM) { vm.VMI = p })
}

// SetAV enables (p non-nil) or disables (nil) HyperAV for a VM's disk.
// Enabling needs the VM's disk in its port's inventory record.
func (c *Controller) SetAV(ctx context.Context, who Caller, tid int, vmName string, p *tenant.AVPolicy) error {
	if p != nil {
		if _, err := p.Params(); err != nil {
			return invalid("%v", err)
		}
		if err := c.needs(ctx, who, tid, vmName, "HyperAV", func(r inventory.Port) bool { return r.Disk != nil }); err != nil {
			return err
		}
	}
	return c.setVMPolicy(ctx, who, tid, vmName, "av", p == nil, func(vm *tenant.VM) { vm.AV = p })
}

// needs checks that the caller's VM has a port whose inventory record
// has what a service needs.
// SetKMon sets (nil: clears) a VM's syscall monitoring policy. The VM's
// port needs its RAM file and gdbstub socket in the host inventory.
func (c *Controller) SetKMon(ctx context.Context, who Caller, tid int, vmName string, p *tenant.KMonPolicy) error {
	if p != nil {
		if err := c.needs(ctx, who, tid, vmName, "syscall monitoring", func(r inventory.Port) bool { return r.Memory != "" && r.GDB != "" }); err != nil {
			return err
		}
		if err := p.Validate(); err != nil {
			return invalid("%v", err)
		}
	}
	return c.setVMPolicy(ctx, who, tid, vmName, "kmon", p == nil, func(vm *tenant.VM) { vm.KMon = p })
}

func (c *Controller) needs(ctx context.Context, who Caller, tid int, vmName, service string, has func(inventory.Port) bool) error {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return err
	}
	si, vi, err := findVM(&d, vmName)
	if err != nil {
		return err
	}
	port := d.Subnets[si].VMs[vi].Port
	var rec inventory.Port
	err = c.st.View(ctx, func(tx *store.Tx) (err error) { rec, err = tx.Port(port); return err })
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil || !has(rec) {
		return fmt.Errorf("vm %q: %s needs the VM's host resources in the inventory record of port %q, which an admin sets (secaas inventory set): %w",
			vmName, service, port, ErrConflict)
	}
	return nil
}

// setVMPolicy changes one of a VM's service policies through the usual
// validate-commit-publish path; the event is SERVICE.enabled or .disabled.
func (c *Controller) setVMPolicy(ctx context.Context, who Caller, tid int, vmName, service string, off bool, set func(*tenant.VM)) error {
	kind := service + ".enabled"
	if off {
		kind = service + ".disabled"
	}
	_, err := c.edit(ctx, who, tid, kind, func(d *tenant.Domain) error {
		si, vi, err := findVM(d, vmName)
		if err != nil {
			return err
		}
		set(&d.Subnets[si].VMs[vi])
		return nil
	})
	return err
}

// avHost checks that the caller sees a VM with an AV policy and returns
// the host its disk is on.
func (c *Controller) avHost(ctx context.Context, who Caller, tid int, vmName, path string) (string, error) {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return "", err
	}
	si, vi, err := findVM(&d, vmName)
	if err != nil {
		return "", err
	}
	if d.Subnets[si].VMs[vi].AV == nil {
		return "", fmt.Errorf("vm %q has no AV policy (av enable): %w", vmName, ErrConflict)
	}
	if !strings.HasPrefix(path, "/") || len(path) > 4096 {
		return "", fmt.Errorf("path %q must be absolute: %w", path, ErrInvalid)
	}
	return c.hostOf(ctx, d.Subnets[si].VMs[vi].Port)
}

// hostOf locates a VM's host by its port (paper Fig. 7, step 1).
func (c *Controller) hostOf(ctx context.Context, port string) (string, error) {
	var rec inventory.Port
	err := c.st.View(ctx, func(tx *store.Tx) (err error) { rec, err = tx.Port(port); return err })
	if errors.Is(err, store.ErrNotFound) {
		return c.DefaultHost, nil
	}
	return rec.HostOr(c.DefaultHost), err
}

func nodeErr(err error) error {
	if err == nil || errors.Is(err, node.ErrNotFound) {
		if err != nil {
			return fmt.Errorf("%v: %w", err, ErrNotFound)
		}
		return nil
	}
	return fmt.Errorf("%w: %v", ErrNode, err)
}

// AVScan scans a file of a VM's disk now, on the VM's host.
func (c *Controller) AVScan(ctx context.Context, who Caller, tid int, vmName, path string) (json.RawMessage, error) {
	return c.avCall(ctx, who, node.Call{Op: node.OpAVScan, TID: tid, VM: vmName, Path: path})
}

// AVIsolate isolates a file of a VM's disk, on the VM's host.
func (c *Controller) AVIsolate(ctx context.Context, who Caller, tid int, vmName, path string) (json.RawMessage, error) {
	return c.avCall(ctx, who, node.Call{Op: node.OpAVIsolate, TID: tid, VM: vmName, Path: path})
}

func (c *Controller) avCall(ctx context.Context, who Caller, call node.Call) (json.RawMessage, error) {
	host, err := c.avHost(ctx, who, call.TID, call.VM, call.Path)
	if err != nil {
		return nil, err
	}
	r, err := c.fleet.Call(ctx, host, call)
	return r, nodeErr(err)
}

// Result returns the latest result of a kind ("vmi") for a VM the caller
// may see.
func (c *Controller) Result(ctx context.Context, who Caller, tid int, vmName, kind string) (store.Result, error) {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return store.Result{}, err
	}
	if _, _, err := findVM(&d, vmName); err != nil {
		return store.Result{}, err
	}
	var r store.Result
	err = c.st.View(ctx, func(tx *store.Tx) error {
		r, err = tx.Result(tid, vmName, kind)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return r, fmt.Errorf("no %s result yet for vm %q: %w", kind, vmName, ErrNotFound)
	}
	return r, err
}

// AVReport is a VM disk's HyperAV status: live from the node when its
// service runs (so that a scan or isolation just done shows at once),
// else the last round's report the node stored.
func (c *Controller) AVReport(ctx context.Context, who Caller, tid int, vmName string) (store.Result, error) {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return store.Result{}, err
	}
	if _, _, err := findVM(&d, vmName); err != nil {
		return store.Result{}, err
	}
	si, vi, _ := findVM(&d, vmName)
	if host, err := c.hostOf(ctx, d.Subnets[si].VMs[vi].Port); err == nil {
		if doc, err := c.fleet.Call(ctx, host, node.Call{Op: node.OpAVStatus, TID: tid, VM: vmName}); err == nil {
			var at struct {
				At time.Time `json:"at"`
			}
			json.Unmarshal(doc, &at)
			return store.Result{TID: tid, VM: vmName, Kind: "av", Tenant: d.Tenant, Time: at.At, Doc: doc}, nil
		}
	}
	return c.Result(ctx, who, tid, vmName, "av")
}

// AddACR appends a rule to a subnet's set and returns it with its id.
func (c *Controller) AddACR(ctx context.Context, who Caller, tid int, subnet string, a tenant.ACR) (tenant.ACR, error) {
	if a.ID == "" {
		a.ID = "acr-" + randHex(4)
	}
	_, err := c.edit(ctx, who, tid, "acr.created", func(d *tenant.Domain) error {
		i, err := subnetIndex(d, subnet)
		if err != nil {
			return err
		}
		for _, s := range d.Subnets {
			for _, x := range s.ACRs {
				if x.ID == a.ID {
					return fmt.Errorf("acr %q already exists: %w", a.ID, ErrConflict)
				}
			}
		}
		d.Subnets[i].ACRs = append(d.Subnets[i].ACRs, a)
		return nil
	})
	return a, err
}

// DeleteACR removes a rule by id.
func (c *Controller) DeleteACR(ctx context.Context, who Caller, tid int, id string) error {
	_, err := c.edit(ctx, who, tid, "acr.deleted", func(d *tenant.Domain) error {
		for si := range d.Subnets {
			for k, a := range d.Subnets[si].ACRs {
				if a.ID == id {
					d.Subnets[si].ACRs = slices.Delete(d.Subnets[si].ACRs, k, k+1)
					return nil
				}
			}
		}
		return fmt.Errorf("acr %q: %w", id, ErrNotFound)
	})
	return err
}

// fillIDs gives VMs and ACRs that lack one a generated id.
func fillIDs(d *tenant.Domain) {
	for si := range d.Subnets {
		for vi := range d.Subnets[si].VMs {
			if d.Subnets[si].VMs[vi].UUID == "" {
				d.Subnets[si].VMs[vi].UUID = newUUID()
			}
		}
		for k := range d.Subnets[si].ACRs {
			if d.Subnets[si].ACRs[k].ID == "" {
				d.Subnets[si].ACRs[k].ID = "acr-" + randHex(4)
			}
		}
	}
}

// CheckRequest describes a packet between two VMs of one domain, for the
// oracle.
type CheckRequest struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Proto   string `json:"proto"`
	SrcPort uint16 `json:"sport,omitempty"`
	DstPort uint16 `json:"dport,omitempty"`
}

// Check evaluates a packet with the reference oracle over the caller's domain.
func (c *Controller) Check(ctx context.Context, who Caller, tid int, req CheckRequest) (tenant.Verdict, error) {
	d, err := c.Domain(ctx, who, tid)
	if err != nil {
		return tenant.Verdict{}, err
	}
	n, err := tenant.NewNet([]tenant.Domain{d})
	if err != nil {
		return tenant.Verdict{}, err
	}
	p, err := BuildPacket(n, tid, req)
	if err != nil {
		return tenant.Verdict{}, err
	}
	return n.Decide(p), nil
}

// BuildPacket makes the packet VM from sends to VM to (by name).
func BuildPacket(n *tenant.Net, tid int, req CheckRequest) (tenant.Packet, error) {
	a, ok := n.VMByName(tid, req.From)
	if !ok {
		return tenant.Packet{}, invalid("from: unknown vm %q", req.From)
	}
	b, ok := n.VMByName(tid, req.To)
	if !ok {
		return tenant.Packet{}, invalid("to: unknown vm %q", req.To)
	}
	p := tenant.Packet{InPort: a.Port, EthSrc: a.HW, EthDst: b.HW, Src: a.Addr, Dst: b.Addr,
		SrcPort: req.SrcPort, DstPort: req.DstPort, EthType: tenant.EthIPv4}
	if a.Addr.Is6() {
		p.EthType = tenant.EthIPv6
	}
	switch strings.ToLower(req.Proto) {
	case "tcp", "":
		p.Proto = tenant.ProtoTCP
		if p.SrcPort == 0 {
			p.SrcPort = 40000
		}
	case "udp":
		p.Proto = tenant.ProtoUDP
		if p.SrcPort == 0 {
			p.SrcPort = 40000
		}
	case "icmp", "icmp6", "ping":
		p.Proto, p.ICMPType, p.SrcPort, p.DstPort = tenant.ProtoICMP, 8, 0, 0
		if p.EthType == tenant.EthIPv6 {
			p.Proto, p.ICMPType = tenant.ProtoICMP6, 128
		}
	default:
		return tenant.Packet{}, invalid("proto %q is not tcp, udp or icmp", req.Proto)
	}
	return p, nil
}

// MaxEvents bounds one page of events.
const MaxEvents = 1000

// Events returns the caller's events that match q (q.Tenant is set from
// the caller: a tenant sees only its own).
func (c *Controller) Events(ctx context.Context, who Caller, q store.EventQuery) ([]store.Event, error) {
	if q.Limit <= 0 || q.Limit > MaxEvents {
		q.Limit = MaxEvents
	}
	q.Tenant = who.Tenant
	if who.Admin {
		q.Tenant = ""
	}
	out := []store.Event{}
	err := c.st.View(ctx, func(tx *store.Tx) error {
		ev, err := tx.Events(q)
		out = append(out, ev...)
		return err
	})
	return out, err
}

type ifMatchKey struct{}

// WithIfMatch makes the changes made with ctx apply only to a domain at
// revision rev (HTTP If-Match); another revision fails with
// ErrPrecondition.
func WithIfMatch(ctx context.Context, rev int) context.Context {
	return context.WithValue(ctx, ifMatchKey{}, rev)
}

func ifMatch(ctx context.Context) (int, bool) {
	rev, ok := ctx.Value(ifMatchKey{}).(int)
	return rev, ok
}
