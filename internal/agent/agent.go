package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"secaas/internal/av"
	"secaas/internal/flow"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// Event is something the agent did or saw that the control plane should
// record.
type Event struct {
	Kind    string // "flows.applied", "flows.drift_repaired", "flows.recompiled", "nad.alert", ...
	Tenant  string // set when the event concerns one tenant's object
	Subject string // e.g. "vm/VM1"
	Detail  string
	// For per-VM results (vmi.report): the VM, and the full result.
	TID  int
	VM   string
	Data []byte
}

// Agent enforces tenant domains on one bridge.
type Agent struct {
	br      *ovs.Bridge
	log     *slog.Logger
	onEvent func(Event)

	mu      sync.Mutex // guards the fields below and serialises switch writes
	domains []tenant.Domain
	inv     inventory.Ports // the host inventory: each VM port's host resources
	// here: the ports the desired state places on this host (nil: all);
	// per-VM services run only for VMs on them.
	here       map[string]bool
	generation int64 // of the desired state the switch enforces
	net        *tenant.Net
	ports      flow.Ports // the VMs' and uplinks' ports (not the tunnel)
	tunPort    uint32     // the tunnel port's OpenFlow number (0: none)
	// remote: the tunnel endpoints of the hosts of this host's domains'
	// VMs that run elsewhere, by VM port.
	remote map[string]netip.Addr
	set    *flow.Set
	cache  *flow.Cache // the rules' compiled flows, for the next change
	flows  string
	// version counts the flow sets applied (a reconcile that read the
	// switch while one changed finds nothing).
	version uint64
	// synced: the switch is known to hold exactly flows, so a change can be
	// sent as a difference instead of a full replacement.
	synced bool
	// installed is the hash of the switch's flow table (a dump without
	// statistics, lines sorted) as last seen equal to flows; "" after a
	// change, until a reconcile round has compared the table in full.
	installed string
	monitors  map[string]*monitor   // anomaly detection, by VM port
	vmis      map[string]*vmiWatch  // memory monitoring, by "TID/VM"
	avs       map[string]*avWorker  // HyperAV, by "TID/VM"
	kmons     map[string]*kmonWatch // syscall monitoring, by "TID/VM"
	kgates    kmonGates
	traffic   trafficViews // per VM, which ports answer (from the NAD mirror), for memory monitoring's cross-view
	clamd     *av.Clamd    // shared by every VM's HyperAV

	// DataDir holds per-VM state (HyperAV sector state, quarantine) and the
	// node's clamd; Signatures adds .ndb/.hdb/.yar files to clamd's
	// offline database. Set before Start.
	DataDir    string
	Signatures string
	// Hashes is a SHA-256 list of known-bad files (sha256sum format) for
	// the hashlist engine.
	Hashes string
	hashes *av.HashList
	// TunnelIP is this host's VXLAN endpoint (the address it sends
	// tunnelled packets from, which the other hosts reach); unset, the
	// host's domains do not span hosts. Set before Start.
	TunnelIP netip.Addr
	// ModelDir holds the trained models NAD policies name (secaasd
	// --nad-models).
	ModelDir string
	// KMonObject is the compiled syscall monitor (secaas kmon build) the
	// agent injects into guests. Set before Start.
	KMonObject string
	// Host opens the VMs' host resources (RAM files, sockets, disk
	// images), confined to the host's roots (hostpath.Roots). Without it
	// no service that needs them starts. Set before Start.
	Host hostpath.Host
}

// New returns an agent for br. onEvent may be nil.
func New(br *ovs.Bridge, log *slog.Logger, onEvent func(Event)) *Agent {
	if onEvent == nil {
		onEvent = func(Event) {}
	}
	return &Agent{br: br, log: log, onEvent: onEvent, net: mustEmpty(), cache: flow.NewCache()}
}

func mustEmpty() *tenant.Net {
	n, err := tenant.NewNet(nil)
	if err != nil {
		panic(err)
	}
	return n
}

// Start makes sure the bridge exists (fail_mode=secure). It installs
// nothing: the flows a previous run left keep forwarding until the first
// Apply, which changes the switch only where it differs from the desired
// state, so a restart of the daemon drops no packet. A new bridge has no
// flows and, failing secure, forwards nothing until then.
func (a *Agent) Start(ctx context.Context) error {
	if err := a.br.Ensure(ctx); err != nil {
		return err
	}
	if a.TunnelIP.IsValid() {
		return a.br.EnsureTunnel(ctx, TunnelPort, a.TunnelIP)
	}
	return nil
}

// TunnelPort is the name of the agent's VXLAN port; no VM port may use it.
const TunnelPort = "secaas-vxlan"

// switchPorts returns the bridge's ports without the tunnel, and the
// tunnel's number when this host tunnels.
func (a *Agent) switchPorts(ctx context.Context) (flow.Ports, uint32, error) {
	ports, err := a.br.Ports(ctx)
	if err != nil {
		return nil, 0, err
	}
	tun := ports[TunnelPort]
	delete(ports, TunnelPort)
	if !a.TunnelIP.IsValid() {
		tun = 0
	}
	return ports, tun, nil
}

// compileLocked compiles domains for the switch's current ports, keeping
// the priorities of the rules the switch has; through the agent's cache
// (only the changed rules are compiled) unless it is a dry run. The
// switch's ports are read while the domains compile for the ports the
// agent last saw; only if they moved does it compile again.
func (a *Agent) compileLocked(ctx context.Context, domains []tenant.Domain, dry bool) (*tenant.Net, flow.Ports, uint32, *flow.Set, error) {
	type portsRead struct {
		ports flow.Ports
		tun   uint32
		err   error
	}
	read := make(chan portsRead, 1)
	go func() {
		var r portsRead
		r.ports, r.tun, r.err = a.switchPorts(ctx)
		read <- r
	}()
	n, err := tenant.NewNet(domains)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	var prev flow.Priorities
	if a.set != nil {
		prev = a.set.Priorities
	}
	compile := a.cache.Compile
	if dry {
		compile = flow.CompileWith
	}
	var set *flow.Set
	guess, guessTun := a.ports, a.tunPort
	if guess != nil {
		if set, err = compile(n, guess, flow.Tunnels{Port: guessTun, Remote: a.remote}, prev); err != nil {
			return nil, nil, 0, nil, err
		}
	}
	r := <-read
	if r.err != nil {
		return nil, nil, 0, nil, r.err
	}
	if set == nil || !maps.Equal(r.ports, guess) || r.tun != guessTun {
		if set, err = compile(n, r.ports, flow.Tunnels{Port: r.tun, Remote: a.remote}, prev); err != nil {
			return nil, nil, 0, nil, err
		}
	}
	return n, r.ports, r.tun, set, nil
}

// Apply validates domains, compiles them against the bridge's current ports
// and replaces the bridge's flows in one bundle; inv (may be nil) gives the
// VM ports' host resources to the per-VM services. On error the switch and
// the agent keep the previous state.
func (a *Agent) Apply(ctx context.Context, domains []tenant.Domain, inv inventory.Ports) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inv, a.here = inv, nil
	return a.applyLocked(ctx, domains)
}

func (a *Agent) applyLocked(ctx context.Context, domains []tenant.Domain) error {
	n, ports, tun, set, err := a.compileLocked(ctx, domains, false)
	if err != nil {
		return err
	}
	text := set.String()
	if err := a.install(ctx, set, text); err != nil {
		return err
	}
	a.domains, a.net, a.ports, a.tunPort, a.set, a.flows = domains, n, ports, tun, set, text
	a.version++
	a.syncMonitorsLocked(ctx)
	a.syncVMILocked()
	a.syncAVLocked()
	a.syncKMonLocked()
	a.log.Info("flows applied", "bridge", a.br.Name, "domains", len(domains), "flows", len(set.Flows))
	a.onEvent(Event{Kind: "flows.applied", Detail: fmt.Sprintf("%d domains, %d flows on %s", len(domains), len(set.Flows), a.br.Name)})
	return nil
}

// Plan says which flows applying domains would remove from and add to the
// switch, without changing anything (for dry runs and diffs).
func (a *Agent) Plan(ctx context.Context, domains []tenant.Domain, _ inventory.Ports) (removed, added []string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _, _, set, err := a.compileLocked(ctx, domains, true)
	if err != nil {
		return nil, nil, err
	}
	removed, added = flow.DiffLines(a.flows, set.String())
	return removed, added, nil
}

// install puts text on the switch: as a one-bundle difference when the
// switch is known to hold a.flows, else (after a start, a failed update or
// drift) as a one-bundle full replacement, unless the switch already holds
// exactly text.
func (a *Agent) install(ctx context.Context, set *flow.Set, text string) error {
	a.installed = ""
	if !a.synced {
		if diff, err := a.br.Diff(ctx, text); err == nil && strings.TrimSpace(diff) == "" {
			a.synced = true
			return nil
		}
	}
	if a.synced && a.set != nil {
		del, add := flow.Delta(a.set, set)
		if len(del)+len(add) == 0 {
			return nil
		}
		if err := a.br.Modify(ctx, del, add); err == nil {
			return nil
		}
		a.log.Warn("incremental flow update failed, replacing the table", "bridge", a.br.Name)
	}
	a.synced = false
	if err := a.br.Replace(ctx, text); err != nil {
		return err
	}
	a.synced = true
	return nil
}

// Reconcile runs one pass: recompile if the bridge's ports changed, then
// compare the switch's whole flow table (matches and actions) with the
// desired flows and restore them in one bundle if they differ. It
// reports whether it changed the switch.
//
// The comparison is cheap when nothing changed: a hash of the table
// (dumped without statistics) against the hash recorded when the table
// last matched; only a changed hash, or the first pass after a change,
// runs the full difference. So any drift, an in-place edit of one
// flow's actions included, is found within one interval.
func (a *Agent) Reconcile(ctx context.Context) (bool, error) {
	// The switch is read without holding the agent, so that a change need
	// not wait for a comparison of the whole table; what the comparison
	// finds counts only if no change went on meanwhile.
	a.mu.Lock()
	if a.set == nil {
		a.mu.Unlock()
		return false, nil // nothing applied yet: the switch keeps what it has
	}
	version, flows, installed, known, knownTun := a.version, a.flows, a.installed, a.ports, a.tunPort
	a.mu.Unlock()
	ports, tun, err := a.switchPorts(ctx)
	if err != nil {
		return false, err
	}
	if !maps.Equal(ports, known) || tun != knownTun {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.version != version {
			return false, nil // a change compiled for the ports meanwhile
		}
		a.log.Info("ports changed, recompiling", "bridge", a.br.Name)
		if err := a.applyLocked(ctx, a.domains); err != nil {
			return false, fmt.Errorf("reconcile: %w", err)
		}
		a.onEvent(Event{Kind: "flows.recompiled", Detail: "switch ports changed"})
		return true, nil
	}
	dump, err := a.br.DumpFlows(ctx)
	if err != nil {
		return false, fmt.Errorf("reconcile: %w", err)
	}
	h := tableHash(dump)
	if installed != "" && h == installed {
		return false, nil
	}
	diff, err := a.br.Diff(ctx, flows)
	if err != nil {
		return false, fmt.Errorf("reconcile: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.version != version {
		return false, nil // a change went on: the next round looks again
	}
	if strings.TrimSpace(diff) == "" {
		a.installed = h
		return false, nil
	}
	lines := strings.Count(strings.TrimSpace(diff), "\n") + 1
	a.synced = false
	if err := a.install(ctx, a.set, a.flows); err != nil {
		return false, fmt.Errorf("reconcile: %w", err)
	}
	a.log.Warn("flow drift repaired", "bridge", a.br.Name, "differences", lines)
	a.onEvent(Event{Kind: "flows.drift_repaired", Detail: fmt.Sprintf("%d flow differences on %s repaired", lines, a.br.Name)})
	return true, nil
}

// tableHash is a hash of a flow dump's flows, in any order: the reply
// header line is left out, the flow lines are sorted.
func tableHash(dump string) string {
	var lines []string
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "OFPST_") || strings.HasPrefix(l, "NXST_") {
			continue
		}
		lines = append(lines, l)
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

// Run reconciles every interval until ctx ends, and at once whenever the
// switch reports a change of its flow table (OpenFlow flow monitoring):
// tampering is then repaired in milliseconds, and the interval is the
// bound when monitoring is not available (it is restarted each tick).
func (a *Agent) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	changes, _ := a.br.Monitor(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if changes == nil {
				changes, _ = a.br.Monitor(ctx)
			}
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			// Let a burst of changes (a bundle of many flows) settle.
			time.Sleep(monitorSettle)
			select {
			case <-changes:
			default:
			}
		}
		if _, err := a.Reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("reconcile failed", "bridge", a.br.Name, "err", err)
		}
	}
}

// monitorSettle is how long a reconcile waits after a flow-table change
// is reported, for the rest of a burst.
const monitorSettle = 10 * time.Millisecond

// Flows returns the desired flow set currently enforced.
func (a *Agent) Flows() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flows
}

func runCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TraceResult is the switch's verdict on a packet, in policy terms.
type TraceResult struct {
	Action tenant.Action    `json:"action"`
	Out    []string         `json:"out,omitempty"`
	Rules  []tenant.RuleRef `json:"rules,omitempty"`
	Raw    string           `json:"raw,omitempty"`
}

// Trace asks the real switch (ofproto/trace) what it does with p.
func (a *Agent) Trace(ctx context.Context, p tenant.Packet) (TraceResult, error) {
	a.mu.Lock()
	ports, set := a.ports, a.set
	a.mu.Unlock()
	return TraceOn(ctx, a.br, ports, set, p)
}

// TraceOn traces p on br, naming ports and rules with ports and set.
func TraceOn(ctx context.Context, br *ovs.Bridge, ports flow.Ports, set *flow.Set, p tenant.Packet) (TraceResult, error) {
	spec, err := TraceSpec(p, ports)
	if err != nil {
		return TraceResult{}, err
	}
	ct := ""
	if p.IsIP() {
		ct = "trk,new"
		if p.Established {
			ct = "trk,est"
		}
	}
	tr, err := br.Trace(ctx, spec, ct)
	if err != nil {
		return TraceResult{}, err
	}
	res := TraceResult{Action: tenant.Drop, Raw: tr.Raw}
	names := map[uint32]string{}
	for n, no := range ports {
		names[no] = n
	}
	for _, o := range tr.Out {
		res.Out = append(res.Out, names[o])
	}
	if !tr.Dropped && len(res.Out) > 0 {
		res.Action = tenant.Pass
	}
	seen := map[uint64]bool{}
	for _, c := range tr.Cookies {
		if ref, ok := set.Rules[c]; ok && !seen[c] {
			seen[c] = true
			res.Rules = append(res.Rules, ref)
		}
	}
	return res, nil
}

// l3Keyword names the protocol the way ovs-ofctl wants it for prerequisites.
func l3Keyword(v6 bool, proto uint8) string {
	k := map[uint8]string{tenant.ProtoTCP: "tcp", tenant.ProtoUDP: "udp", tenant.ProtoICMP: "icmp", tenant.ProtoICMP6: "icmp6"}[proto]
	switch {
	case k == "icmp6" && v6, k == "icmp" && !v6:
		return k
	case k != "" && k != "icmp" && k != "icmp6":
		if v6 {
			return k + "6"
		}
		return k
	case v6:
		return fmt.Sprintf("ipv6,nw_proto=%d", proto)
	}
	return fmt.Sprintf("ip,nw_proto=%d", proto)
}

// TraceSpec renders p as an ofproto/trace flow description.
func TraceSpec(p tenant.Packet, ports flow.Ports) (string, error) {
	no, ok := ports[p.InPort]
	if !ok {
		return "", fmt.Errorf("trace: port %q is not on the bridge", p.InPort)
	}
	f := []string{fmt.Sprintf("in_port=%d", no)}
	if p.VLAN != 0 {
		f = append(f, fmt.Sprintf("dl_vlan=%d", p.VLAN))
	}
	f = append(f, "dl_src="+p.EthSrc.String(), "dl_dst="+p.EthDst.String())
	addr := func(k string, a netip.Addr) {
		if a.IsValid() {
			f = append(f, k+"="+a.String())
		}
	}
	switch p.EthType {
	case tenant.EthARP:
		f = append(f, "arp", "arp_op=1", "arp_sha="+p.ARPSHA.String())
		addr("arp_spa", p.ARPSPA)
	case tenant.EthIPv4, tenant.EthIPv6:
		v6 := p.EthType == tenant.EthIPv6
		f = append(f, l3Keyword(v6, p.Proto))
		if v6 {
			addr("ipv6_src", p.Src)
			addr("ipv6_dst", p.Dst)
		} else {
			addr("nw_src", p.Src)
			addr("nw_dst", p.Dst)
		}
		switch p.Proto {
		case tenant.ProtoTCP:
			f = append(f, fmt.Sprintf("tcp_src=%d,tcp_dst=%d", p.SrcPort, p.DstPort))
		case tenant.ProtoUDP: // ofproto/trace refuses tp_src for UDP
			f = append(f, fmt.Sprintf("udp_src=%d,udp_dst=%d", p.SrcPort, p.DstPort))
		case tenant.ProtoICMP:
			f = append(f, fmt.Sprintf("icmp_type=%d", p.ICMPType))
		case tenant.ProtoICMP6:
			f = append(f, fmt.Sprintf("icmpv6_type=%d", p.ICMPType))
			if p.ICMPType == tenant.NDNeighborSolicit || p.ICMPType == tenant.NDNeighborAdvert {
				addr("nd_target", p.NDTarget)
			}
		}
	default:
		f = append(f, fmt.Sprintf("dl_type=0x%04x", p.EthType))
	}
	return strings.Join(f, ","), nil
}
