package flow

import (
	"flag"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"secaas/internal/tenant"
	"secaas/internal/tenant/tenanttest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func table2(t testing.TB) (*tenant.Net, Ports) {
	t.Helper()
	_, n, err := tenant.LoadPolicy("../../examples/table2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return n, Ports{"vm1": 1, "vm2": 2, "vm3": 3}
}

func TestGoldenTable2(t *testing.T) {
	n, ports := table2(t)
	set, err := Compile(n, ports)
	if err != nil {
		t.Fatal(err)
	}
	got := set.String()
	const golden = "testdata/table2.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("flow set differs from %s (rerun with -update after checking):\n%s", golden, got)
	}
}

func TestPortBlocks(t *testing.T) {
	for _, r := range []tenant.PortRange{{Lo: 22, Hi: 22}, {Lo: 1000, Hi: 2000}, {Lo: 1, Hi: 65535}, {Lo: 0, Hi: 0xffff}, {Lo: 65535, Hi: 65535}, {Lo: 1023, Hi: 1025}} {
		blocks := portBlocks(r)
		for p := 0; p <= 0xffff; p++ {
			in := false
			for _, b := range blocks {
				if uint16(p)&b[1] == b[0] {
					in = true
				}
			}
			if in != (uint16(p) >= r.Lo && uint16(p) <= r.Hi) {
				t.Fatalf("range %v port %d: blocks %v say %v", r, p, blocks, in)
			}
		}
	}
}

// TestPropertyOracleAgreesAndNoCrossTenant runs the compiled flows on random
// packets over random nets: the interpreter must agree with the oracle on
// every packet and never deliver a packet outside its ingress domain.
func TestPropertyOracleAgreesAndNoCrossTenant(t *testing.T) {
	nets, perNet := 1000, 12
	if testing.Short() {
		nets = 100
	}
	r := rand.New(rand.NewPCG(1, 2))
	cases, passed := 0, 0
	seen := map[string]int{} // anti-spoofing verdicts and delivered IPv6, so each path is exercised
	for i := 0; i < nets; i++ {
		ds := tenanttest.Net(r, tenanttest.Options{Domains: 2 + r.IntN(2), Uplinks: true, AllowStateful: true})
		n, err := tenant.NewNet(ds)
		if err != nil {
			t.Fatalf("generator made an invalid net: %v", err)
		}
		ports := Ports{}
		names := map[uint32]string{}
		for _, d := range n.Domains {
			for _, vm := range d.VMs {
				if r.IntN(12) != 0 { // a few VMs are not attached
					ports[vm.Port] = uint32(len(ports) + 1)
					names[ports[vm.Port]] = vm.Port
				}
			}
		}
		ports[tenanttest.UplinkPort] = 100
		names[100] = tenanttest.UplinkPort
		set, err := Compile(n, ports)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < perNet; k++ {
			p := tenanttest.Packet(r, n)
			cases++
			res, err := set.Run(p, ports)
			if err != nil {
				t.Fatalf("net %d packet %+v: %v", i, p, err)
			}
			// No cross-tenant delivery, ever.
			ingress := ingressTID(n, p)
			for j, o := range res.Out {
				if vm, ok := n.VMByPort(names[o]); ok {
					if vm.Subnet.Domain.TID != ingress {
						t.Fatalf("packet %+v from domain %d delivered to vm %s of domain %d", p, ingress, vm.Name, vm.Subnet.Domain.TID)
					}
				} else if res.VLAN[j] != ingress {
					t.Fatalf("packet %+v from domain %d left uplink with tag %d", p, ingress, res.VLAN[j])
				}
			}
			// Agreement with the oracle on attached ports.
			v := n.Decide(p)
			var want []string
			if v.Action == tenant.Pass {
				for _, o := range v.Out {
					if _, ok := ports[o]; ok && (o != p.InPort) {
						want = append(want, o)
					}
				}
			}
			if _, ok := ports[p.InPort]; !ok {
				want = nil
			}
			var got []string
			for _, o := range res.Out {
				got = append(got, names[o])
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("net %d: packet %+v\noracle: %v %v (%s)\nflows:  %v\ntrace: %v\npolicy: %+v", i, p, v.Action, want, v.Reason, got, res.Trace, ds)
			}
			if len(got) > 0 {
				passed++
				if p.EthType == tenant.EthIPv6 {
					seen["IPv6 delivered"]++
				}
			}
			for _, k := range []string{"IPv6 source does not match", "neighbour advertisement for an address", "IPv4 source does not match", "ARP sender does not match"} {
				if strings.HasPrefix(v.Reason, k) {
					seen[k]++
				}
			}
		}
	}
	t.Logf("%d cases, %d delivered; %v", cases, passed, seen)
	if passed == 0 || passed == cases {
		t.Fatalf("degenerate sample: %d of %d delivered", passed, cases)
	}
	if len(seen) < 5 {
		t.Fatalf("the sample misses a kind of case: %v", seen)
	}
}

func ingressTID(n *tenant.Net, p tenant.Packet) int {
	if vm, ok := n.VMByPort(p.InPort); ok {
		return vm.Subnet.Domain.TID
	}
	if d, ok := n.UplinkDomain(p.InPort, p.VLAN); ok {
		return d.TID
	}
	return -1
}

func TestTable2ThroughFlows(t *testing.T) {
	n, ports := table2(t)
	set, err := Compile(n, ports)
	if err != nil {
		t.Fatal(err)
	}
	vm := func(name string) *tenant.RVM { v, _ := n.VMByName(0, name); return v }
	pkt := func(a, b string, proto uint8, sp, dp uint16) tenant.Packet {
		x, y := vm(a), vm(b)
		return tenant.Packet{InPort: x.Port, EthSrc: x.HW, EthDst: y.HW, EthType: tenant.EthIPv4, Src: x.Addr, Dst: y.Addr, Proto: proto, SrcPort: sp, DstPort: dp}
	}
	for _, tc := range []struct {
		name string
		p    tenant.Packet
		out  int
	}{
		{"ping VM1->VM2", pkt("VM1", "VM2", tenant.ProtoICMP, 0, 0), 1},
		{"ping VM1->VM3", pkt("VM1", "VM3", tenant.ProtoICMP, 0, 0), 0},
		{"tcp VM1->VM3:22", pkt("VM1", "VM3", tenant.ProtoTCP, 40000, 22), 1},
		{"tcp VM3:22->VM1", pkt("VM3", "VM1", tenant.ProtoTCP, 22, 40000), 1},
	} {
		res, err := set.Run(tc.p, ports)
		if err != nil || len(res.Out) != tc.out {
			t.Errorf("%s: out %v err %v, want %d outputs", tc.name, res.Out, err, tc.out)
		}
	}
}

func BenchmarkCompile10kACRs(b *testing.B) {
	n := BigNet(b, 10000)
	ports := Ports{}
	for _, d := range n.Domains {
		for i, vm := range d.VMs {
			ports[vm.Port] = uint32(i + 1)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Compile(n, ports); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStablePrioritiesSmallDiff: adding one rule on top of 10k changes only
// that rule's flows; removing it again restores the original set.
func TestStablePrioritiesSmallDiff(t *testing.T) {
	d := BigDomain(100, 2000)
	n, _ := tenant.NewNet([]tenant.Domain{d})
	ports := Ports{}
	for i, vm := range n.Domains[0].VMs {
		ports[vm.Port] = uint32(i + 1)
	}
	base, err := Compile(n, ports)
	if err != nil {
		t.Fatal(err)
	}
	for _, prio := range []int{0, 500, 65535} {
		d2 := BigDomain(100, 2000)
		d2.Subnets[2].ACRs = slices.Insert(d2.Subnets[2].ACRs, 7, tenant.ACR{Priority: prio, Proto: "udp", DstPort: tenant.PortRange{Lo: 53, Hi: 53}, Action: tenant.Pass})
		n2, err := tenant.NewNet([]tenant.Domain{d2})
		if err != nil {
			t.Fatal(err)
		}
		next, err := CompileFrom(n2, ports, base.Priorities)
		if err != nil {
			t.Fatal(err)
		}
		removed, added := DiffLines(base.String(), next.String())
		// The new rule: udp/53 over IPv4 and IPv6.
		if len(removed) != 0 || len(added) != 2 {
			t.Fatalf("priority %d: %d flows added, %d removed; want 2 and 0", prio, len(added), len(removed))
		}
		back, err := CompileFrom(n, ports, next.Priorities)
		if err != nil || back.String() != base.String() {
			t.Fatalf("priority %d: removing the rule did not restore the set (%v)", prio, err)
		}
	}
}

// TestPropertyIncremental: nets mutated rule by rule and compiled with the
// previous priorities still agree with the oracle; compiled through a
// Cache they give the same set, and Delta turns the previous set's lines
// into the new set's exactly.
func TestPropertyIncremental(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cases := 0
	for i := 0; i < 200; i++ {
		ds := tenanttest.Net(r, tenanttest.Options{Domains: 2, Uplinks: true, AllowStateful: true})
		n, _ := tenant.NewNet(ds)
		ports := Ports{tenanttest.UplinkPort: 100}
		for _, d := range n.Domains {
			for _, vm := range d.VMs {
				ports[vm.Port] = uint32(len(ports) + 1)
			}
		}
		set, err := Compile(n, ports)
		if err != nil {
			t.Fatal(err)
		}
		cache := NewCache()
		cached, err := cache.Compile(n, ports, Tunnels{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for step := 0; step < 5; step++ {
			d := &ds[r.IntN(len(ds))]
			s := &d.Subnets[r.IntN(len(d.Subnets))]
			if len(s.ACRs) > 0 && r.IntN(3) == 0 {
				k := r.IntN(len(s.ACRs))
				s.ACRs = slices.Delete(s.ACRs, k, k+1)
			} else {
				other := tenanttest.Net(r, tenanttest.Options{Domains: 1, MaxRules: 3})
				if acrs := other[0].Subnets[0].ACRs; len(acrs) > 0 {
					for k := range acrs {
						acrs[k].SrcMAC, acrs[k].DstMAC, acrs[k].SrcIP, acrs[k].DstIP = nil, nil, nil, nil
					}
					s.ACRs = slices.Insert(s.ACRs, r.IntN(len(s.ACRs)+1), acrs[0])
				}
			}
			if n, err = tenant.NewNet(ds); err != nil {
				t.Fatal(err)
			}
			if set, err = CompileFrom(n, ports, set.Priorities); err != nil {
				t.Fatal(err)
			}
			// A port goes and comes back: its VM's flows change, not the
			// rules'. (The oracle does not know detached ports.)
			detached := step == 3
			at := ports
			if detached {
				at = maps.Clone(ports)
				for p := range at {
					if p != tenanttest.UplinkPort {
						delete(at, p)
						break
					}
				}
				if set, err = CompileFrom(n, at, set.Priorities); err != nil {
					t.Fatal(err)
				}
			}
			next, err := cache.Compile(n, at, Tunnels{}, cached.Priorities)
			if err != nil {
				t.Fatal(err)
			}
			if next.String() != set.String() {
				t.Fatalf("net %d step %d: the cache compiled another set", i, step)
			}
			del, add := Delta(cached, next)
			lines := map[string]bool{}
			for _, l := range strings.Split(strings.TrimSpace(cached.String()), "\n") {
				lines[l] = true
			}
			for _, l := range del {
				if !lines[l] {
					t.Fatalf("net %d step %d: delta deletes a line the set does not have: %s", i, step, l)
				}
				delete(lines, l)
			}
			for _, l := range add {
				if lines[l] {
					t.Fatalf("net %d step %d: delta adds a line the set has: %s", i, step, l)
				}
				lines[l] = true
			}
			want := strings.Split(strings.TrimSpace(next.String()), "\n")
			if len(lines) != len(want) {
				t.Fatalf("net %d step %d: delta leads to %d lines, want %d", i, step, len(lines), len(want))
			}
			for _, l := range want {
				if !lines[l] {
					t.Fatalf("net %d step %d: delta misses %s", i, step, l)
				}
			}
			cached = next
			for k := 0; k < 10 && !detached; k++ {
				p := tenanttest.Packet(r, n)
				res, err := set.Run(p, ports)
				if err != nil {
					t.Fatal(err)
				}
				v := n.Decide(p)
				if (len(res.Out) > 0) != (v.Action == tenant.Pass && len(slices.DeleteFunc(slices.Clone(v.Out), func(o string) bool { return o == p.InPort })) > 0) {
					t.Fatalf("packet %+v: flows out %v, oracle %s %v (%s)", p, res.Out, v.Action, v.Out, v.Reason)
				}
				cases++
			}
		}
	}
	t.Logf("%d cases", cases)
}

// BigNet validates BigDomain(100, nACR).
func BigNet(tb testing.TB, nACR int) *tenant.Net {
	n, err := tenant.NewNet([]tenant.Domain{BigDomain(100, nACR)})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
