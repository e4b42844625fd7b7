package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/inventory"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

const (
	fleetAdmin = "fleet-admin-token-0123456789"
	fleetBus   = "fleet-bus-token-0123456789"
)

// fleetDomain is a three-VM stateful domain on ports PREFIX1..3 whose
// rules make a non-trivial reachability matrix: 1<->2 pass, 3 reaches 1
// on ICMP only (the replies pass by conntrack), 1 and 2 never reach 3.
func fleetDomain(tid int, prefix string) tenant.Domain {
	vm := func(i int) tenant.VM {
		return tenant.VM{Name: fmt.Sprintf("v%d", i), MAC: fmt.Sprintf("02:00:00:%02x:00:%02x", tid%256, i),
			IP: fmt.Sprintf("10.%d.0.%d", tid%256, i), Port: fmt.Sprintf("%s%d", prefix, i)}
	}
	return tenant.Domain{TID: tid, Name: fmt.Sprintf("d%d", tid), Tenant: "acme", Mode: tenant.Stateful, Subnets: []tenant.Subnet{{
		Name: "s", VMs: []tenant.VM{vm(1), vm(2), vm(3)},
		ACRs: []tenant.ACR{
			{Priority: 5, SrcMAC: []string{"v1"}, DstMAC: []string{"v2"}, Action: tenant.Pass},
			{Priority: 5, SrcMAC: []string{"v2"}, DstMAC: []string{"v1"}, Action: tenant.Pass},
			{Priority: 4, SrcMAC: []string{"v3"}, DstMAC: []string{"v1"}, Proto: "icmp", Action: tenant.Pass},
		}}}}
}

// matrix pings every ordered pair of d's VMs and compares with the
// oracle's verdicts on the echo request and its reply; it returns the
// mismatches.
func matrix(ctx context.Context, d tenant.Domain, hosts map[string]*lab.Host) []string {
	n, err := tenant.NewNet([]tenant.Domain{d})
	if err != nil {
		return []string{err.Error()}
	}
	var bad []string
	for _, s := range d.Subnets {
		for _, a := range s.VMs {
			for _, b := range s.VMs {
				if a.Name == b.Name {
					continue
				}
				p, err := controller.BuildPacket(n, d.TID, controller.CheckRequest{From: a.Name, To: b.Name, Proto: "icmp"})
				if err != nil {
					return []string{err.Error()}
				}
				r, _ := controller.BuildPacket(n, d.TID, controller.CheckRequest{From: b.Name, To: a.Name, Proto: "icmp"})
				r.ICMPType, r.Established = 0, true // the echo reply
				want := n.Decide(p).Action == tenant.Pass && n.Decide(r).Action == tenant.Pass
				ha, hb := hosts[a.Port], hosts[b.Port]
				got := ha.Ping(ctx, hb.IP.Addr(), 2, time.Second)
				if want && !got { // a lost echo on a loaded machine is not a verdict: ask again
					got = ha.Ping(ctx, hb.IP.Addr(), 3, 2*time.Second)
				}
				if got != want {
					bad = append(bad, fmt.Sprintf("%s->%s: ping %v, oracle %v", a.Name, b.Name, got, want))
				}
			}
		}
	}
	return bad
}

type fleet struct {
	t       *testing.T
	dir     string
	busAddr string
	log     *slog.Logger
}

func (f *fleet) roots(c Config) Config {
	c.ImageRoot, c.RunRoot, c.ShmRoot = filepath.Join(f.dir, "images"), filepath.Join(f.dir, "run"), filepath.Join(f.dir, "shm")
	c.BusToken, c.Log = fleetBus, f.log
	return c
}

func (f *fleet) controller(ctx context.Context) *Daemon {
	f.t.Helper()
	d, err := New(ctx, f.roots(Config{Role: RoleController, Node: "ctl", DB: filepath.Join(f.dir, "ctl", "secaas.db"),
		AdminToken: fleetAdmin, BusListen: f.busAddr}))
	if err != nil {
		f.t.Fatal(err)
	}
	if f.busAddr == "127.0.0.1:0" {
		u, _ := url.Parse(d.BusURL)
		f.busAddr = u.Host // a restarted controller listens where the agents look
	}
	return d
}

func (f *fleet) agent(ctx context.Context, node string, hv *lab.Hypervisor) *Daemon {
	f.t.Helper()
	d, err := New(ctx, f.roots(Config{Role: RoleAgent, Node: node, Bridge: hv.Bridge("secaas0"), BusURL: "nats://" + f.busAddr,
		DataDir: filepath.Join(f.dir, node), TunnelIP: hv.Underlay.Addr()}))
	if err != nil {
		f.t.Fatal(err)
	}
	go d.Run(ctx, time.Second)
	return d
}

// hypervisors starts two hypervisors (namespaces with their own Open
// vSwitch) on one underlay.
func hypervisors(t *testing.T, ctx context.Context, dir string) (a, b *lab.Hypervisor) {
	t.Helper()
	const underlay = "scf-ul"
	if err := lab.Underlay(ctx, underlay); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.DelUnderlay(context.Background(), underlay) })
	var hvs []*lab.Hypervisor
	for i, ns := range []string{"scf-hva", "scf-hvb"} {
		hv, err := lab.StartHypervisor(ctx, filepath.Join(dir, ns), ns, underlay, netip.MustParsePrefix(fmt.Sprintf("172.31.250.%d/24", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hv.Stop(context.Background()) })
		hvs = append(hvs, hv)
	}
	return hvs[0], hvs[1]
}

// TestFleetOnOneMachine: one controller (embedded NATS JetStream) and two
// agents, each on a hypervisor of its own (a namespace with a private
// Open vSwitch and namespaced VMs), joined by VXLAN over an underlay.
// Each domain runs on the hosts its ports are on, and passes the
// reachability matrix there, the one spanning both hosts through the
// tunnel; a killed agent's host keeps enforcing, and the agent catches up
// when it is back; with the controller down the agents keep enforcing
// and keep their events, and changes committed just before the controller
// went down reach their hosts when it is back, the spanning domain's on
// both or neither. Every event is counted.
func TestFleetOnOneMachine(t *testing.T) {
	labtest.RequireOVS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fleet{t: t, dir: t.TempDir(), busAddr: "127.0.0.1:0", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hypA, hypB := hypervisors(t, ctx, f.dir)
	ctl := f.controller(ctx)
	defer func() { ctl.Close() }()
	hvA := f.agent(ctx, "hv-a", hypA)
	defer func() { hvA.Close() }()
	hvB := f.agent(ctx, "hv-b", hypB)
	defer func() { hvB.Close() }()

	admin := controller.Caller{Admin: true}
	c := func() *controller.Controller { return ctl.Controller }
	if _, _, err := c().CreateTenant(ctx, admin, "acme", ""); err != nil {
		t.Fatal(err)
	}
	// 61 on hv-a, 62 on hv-b, 63 across: v1 on hv-a, v2 and v3 on hv-b.
	domA, domB, domS := fleetDomain(61, "fla"), fleetDomain(62, "flb"), fleetDomain(63, "fls")
	hostOf := map[string]string{"fls1": "hv-a", "fls2": "hv-b", "fls3": "hv-b"}
	for host, d := range map[string]tenant.Domain{"hv-a": domA, "hv-b": domB, "": domS} {
		for _, vm := range d.Subnets[0].VMs {
			h := host
			if h == "" {
				h = hostOf[vm.Port]
			}
			if _, err := c().PutPort(ctx, admin, inventory.Port{Name: vm.Port, Tenant: "acme", Host: h}); err != nil {
				t.Fatal(err)
			}
		}
	}
	vms := func(hv *lab.Hypervisor, d tenant.Domain, prefix string, keep func(*tenant.RVM) bool) map[string]*lab.Host {
		n, _ := tenant.NewNet([]tenant.Domain{d})
		hs, err := hv.HostsFor(ctx, hv.Bridge("secaas0"), n, prefix, keep)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lab.RemoveAll(context.Background(), nil, hs) })
		return hs
	}
	hostsA, hostsB := vms(hypA, domA, "fla-", nil), vms(hypB, domB, "flb-", nil)
	hostsS := vms(hypA, domS, "fls-", func(vm *tenant.RVM) bool { return hostOf[vm.Port] == "hv-a" })
	maps.Copy(hostsS, vms(hypB, domS, "fls-", func(vm *tenant.RVM) bool { return hostOf[vm.Port] == "hv-b" }))
	byPort := func(hs map[string]*lab.Host, d tenant.Domain) map[string]*lab.Host {
		out := map[string]*lab.Host{}
		for _, vm := range d.Subnets[0].VMs {
			out[vm.Port] = hs[vm.Port]
		}
		return out
	}
	// Both hosts have said where their tunnels end.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hs, _ := c().Hosts(ctx, admin)
		eps := 0
		for _, h := range hs {
			if h.Endpoint != "" {
				eps++
			}
		}
		if eps == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts' endpoints: %+v", hs)
		}
	}
	for _, d := range []tenant.Domain{domA, domB, domS} {
		if _, err := c().CreateDomain(ctx, admin, d); err != nil {
			t.Fatalf("create %d: %v", d.TID, err)
		}
	}
	// Placement: each host enforces its own domain and the spanning one.
	if ds := hvA.Agent.Domains(); len(ds) != 2 || ds[0].TID != 61 || ds[1].TID != 63 {
		t.Fatalf("hv-a enforces %+v", ds)
	}
	if ds := hvB.Agent.Domains(); len(ds) != 2 || ds[0].TID != 62 || ds[1].TID != 63 {
		t.Fatalf("hv-b enforces %+v", ds)
	}
	if bad := matrix(ctx, domA, byPort(hostsA, domA)); len(bad) > 0 {
		t.Fatalf("hv-a: %v", bad)
	}
	if bad := matrix(ctx, domB, byPort(hostsB, domB)); len(bad) > 0 {
		t.Fatalf("hv-b: %v", bad)
	}
	if bad := matrix(ctx, domS, hostsS); len(bad) > 0 {
		t.Fatalf("across hv-a and hv-b: %v", bad)
	}
	st, err := c().DomainStatus(ctx, admin, 62)
	if err != nil || st.State != "applied" || len(st.Hosts) != 1 || st.Hosts[0].Host != "hv-b" {
		t.Fatalf("status of 62: %+v %v", st, err)
	}
	if st, err := c().DomainStatus(ctx, admin, 63); err != nil || st.State != "applied" || len(st.Hosts) != 2 {
		t.Fatalf("status of 63: %+v %v", st, err)
	}

	// Kill hv-b's agent: its switch keeps enforcing. A change for it is
	// stored and pending; when the agent is back it catches up.
	hvB.Close()
	if bad := matrix(ctx, domB, byPort(hostsB, domB)); len(bad) > 0 {
		t.Fatalf("hv-b without its agent: %v", bad)
	}
	if bad := matrix(ctx, domS, hostsS); len(bad) > 0 {
		t.Fatalf("across, hv-b without its agent: %v", bad)
	}
	domB2 := domB
	domB2.Subnets = []tenant.Subnet{domB.Subnets[0]}
	domB2.Subnets[0].ACRs = append([]tenant.ACR{{Priority: 6, SrcMAC: []string{"v3"}, DstMAC: []string{"v2"}, Action: tenant.Pass},
		{Priority: 6, SrcMAC: []string{"v2"}, DstMAC: []string{"v3"}, Action: tenant.Pass}}, domB.Subnets[0].ACRs...)
	if _, err := c().ReplaceDomain(controller.WithWait(ctx, 300*time.Millisecond), admin, 62, domB2); !errors.Is(err, controller.ErrPending) {
		t.Fatalf("a change for a host whose agent is down: %v", err)
	}
	if st, _ := c().DomainStatus(ctx, admin, 62); st.State != "pending" || st.Hosts[0].Revision != 1 {
		t.Fatalf("status while hv-b is down: %+v", st)
	}
	if bad := matrix(ctx, domB, byPort(hostsB, domB)); len(bad) > 0 {
		t.Fatalf("hv-b changed without its agent: %v", bad)
	}
	hvB = f.agent(ctx, "hv-b", hypB)
	if err := c().AwaitHost(ctx, "hv-b", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := c().DomainStatus(ctx, admin, 62); st.State != "applied" || st.Hosts[0].Revision != 2 {
		t.Fatalf("status after hv-b is back: %+v", st)
	}
	if bad := matrix(ctx, domB2, byPort(hostsB, domB2)); len(bad) > 0 {
		t.Fatalf("hv-b after catching up: %v", bad)
	}
	if bad := matrix(ctx, domS, hostsS); len(bad) > 0 {
		t.Fatalf("across, after hv-b caught up: %v", bad)
	}

	// The controller goes down right after committing a change for hv-a
	// whose agent is away too: both come back; the host applies it.
	hvA.Close()
	domA2 := domA
	domA2.Subnets = []tenant.Subnet{domA.Subnets[0]}
	domA2.Subnets[0].ACRs = domA.Subnets[0].ACRs[:2] // v3 no longer reaches v1
	if _, err := c().ReplaceDomain(controller.WithWait(ctx, 0), admin, 61, domA2); !errors.Is(err, controller.ErrPending) {
		t.Fatalf("change before the controller goes down: %v", err)
	}
	// The spanning domain changes too: hv-b applies it, hv-a cannot yet,
	// and the status says so per host.
	domS2 := domS
	domS2.Subnets = []tenant.Subnet{domS.Subnets[0]}
	domS2.Subnets[0].ACRs = domS.Subnets[0].ACRs[:2]
	if _, err := c().ReplaceDomain(controller.WithWait(ctx, 0), admin, 63, domS2); !errors.Is(err, controller.ErrPending) {
		t.Fatalf("spanning change before the controller goes down: %v", err)
	}
	if err := c().AwaitHost(ctx, "hv-b", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err = c().DomainStatus(ctx, admin, 63)
	if err != nil || st.State != "pending" || len(st.Hosts) != 2 {
		t.Fatalf("status of 63 half-way: %+v %v", st, err)
	}
	for _, h := range st.Hosts {
		if want := map[string]int{"hv-a": 1, "hv-b": 2}[h.Host]; h.Revision != want {
			t.Fatalf("status of 63 half-way: host %s at revision %d, want %d: %+v", h.Host, h.Revision, want, st)
		}
	}
	ctl.Close()
	// With the controller down, hv-b keeps enforcing and keeps its events.
	const n = 3000
	for i := 0; i < n; i++ {
		hvB.reporter.Put(agent.Event{Kind: "test.offline", Detail: fmt.Sprint(i)})
	}
	if bad := matrix(ctx, domB2, byPort(hostsB, domB2)); len(bad) > 0 {
		t.Fatalf("hv-b without a controller: %v", bad)
	}
	hvA = f.agent(ctx, "hv-a", hypA) // it enforces its persisted state meanwhile
	if bad := matrix(ctx, domA, byPort(hostsA, domA)); len(bad) > 0 {
		t.Fatalf("hv-a restarted without a controller: %v", bad)
	}
	ctl = f.controller(ctx)
	if err := c().AwaitHost(ctx, "hv-a", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := c().DomainStatus(ctx, admin, 61); st.State != "applied" || st.Hosts[0].Revision != 2 {
		t.Fatalf("status of 61 after both are back: %+v", st)
	}
	if bad := matrix(ctx, domA2, byPort(hostsA, domA2)); len(bad) > 0 {
		t.Fatalf("hv-a after the controller is back: %v", bad)
	}
	if st, _ := c().DomainStatus(ctx, admin, 63); st.State != "applied" || len(st.Hosts) != 2 || st.Hosts[0].Revision != 2 || st.Hosts[1].Revision != 2 {
		t.Fatalf("status of 63 after both are back: %+v", st)
	}
	if bad := matrix(ctx, domS2, hostsS); len(bad) > 0 {
		t.Fatalf("across, after the controller is back: %v", bad)
	}
	var got []store.Event
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		ctl.Store.View(ctx, func(tx *store.Tx) (err error) {
			got, err = tx.Events(store.EventQuery{Kind: "test.offline", Limit: 2 * n, Oldest: true})
			return err
		})
		if len(got) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(got) != n {
		t.Fatalf("%d of %d events kept across the controller's absence", len(got), n)
	}
	for i, e := range got {
		if e.Detail != fmt.Sprint(i) || e.Host != "hv-b" {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	if err := c().AwaitHost(ctx, "hv-b", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	hs, err := c().Hosts(ctx, admin)
	if err != nil || len(hs) != 3 { // ctl (the default host), hv-a, hv-b
		t.Fatalf("hosts: %+v %v", hs, err)
	}
	for _, h := range hs {
		if h.Name != "ctl" && h.State != "applied" {
			t.Errorf("host %s: %+v", h.Name, h)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("hosts: %s", strings.TrimSpace(fmt.Sprint(hs)))

	// A migration: the inventory now says domain 62's VMs run on hv-a.
	// hv-a takes the domain (and would run its VMs' services), hv-b lets
	// it go.
	for _, vm := range domB2.Subnets[0].VMs {
		if _, err := c().PutPort(ctx, admin, inventory.Port{Name: vm.Port, Tenant: "acme", Host: "hv-a"}); err != nil {
			t.Fatalf("move %s: %v", vm.Port, err)
		}
	}
	tids := func(ds []tenant.Domain) (out []int) {
		for _, d := range ds {
			out = append(out, d.TID)
		}
		return out
	}
	if ds := tids(hvA.Agent.Domains()); !slices.Equal(ds, []int{61, 62, 63}) {
		t.Fatalf("after the move hv-a enforces %v", ds)
	}
	if ds := tids(hvB.Agent.Domains()); !slices.Equal(ds, []int{63}) {
		t.Fatalf("after the move hv-b enforces %v, want only the spanning domain", ds)
	}
	if st, _ := c().DomainStatus(ctx, admin, 62); st.State != "applied" || len(st.Hosts) != 1 || st.Hosts[0].Host != "hv-a" {
		t.Fatalf("status of 62 after the move: %+v", st)
	}
}
