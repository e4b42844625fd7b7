package flow

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"secaas/internal/tenant"
	"secaas/internal/tenant/tenanttest"
)

// TestPropertyAcrossHosts places random nets' VMs on two hosts joined by
// a tunnel (each host with the uplink) and walks each packet through the
// host of its ingress port, then through the tunnel to the far host: the
// ports it reaches must be the oracle's, as on one host, and never a port
// of another domain. A packet from the uplink enters both hosts, as a
// provider network delivers it.
func TestPropertyAcrossHosts(t *testing.T) {
	nets, perNet := 600, 12
	if testing.Short() {
		nets = 60
	}
	r := rand.New(rand.NewPCG(3, 4))
	const tunPort, upPort = 200, 100
	type host struct {
		ep    netip.Addr
		ports Ports
		names map[uint32]string
		set   *Set
	}
	cases, passed, tunnelled, far := 0, 0, 0, 0
	for i := 0; i < nets; i++ {
		ds := tenanttest.Net(r, tenanttest.Options{Domains: 2 + r.IntN(2), Uplinks: true, AllowStateful: true})
		n, err := tenant.NewNet(ds)
		if err != nil {
			t.Fatalf("generator made an invalid net: %v", err)
		}
		hs := []*host{{ep: netip.MustParseAddr("198.51.100.1")}, {ep: netip.MustParseAddr("198.51.100.2")}}
		remote := []map[string]netip.Addr{{}, {}}
		for _, h := range hs {
			h.ports = Ports{"vx": tunPort, tenanttest.UplinkPort: upPort}
			h.names = map[uint32]string{upPort: tenanttest.UplinkPort}
		}
		attached := map[string]bool{}
		for _, d := range n.Domains {
			for _, vm := range d.VMs {
				k := r.IntN(2)
				remote[1-k][vm.Port] = hs[k].ep
				if r.IntN(12) != 0 { // a few VMs are not attached
					h := hs[k]
					h.ports[vm.Port] = uint32(len(h.ports) + 1)
					h.names[h.ports[vm.Port]] = vm.Port
					attached[vm.Port] = true
				}
			}
		}
		for k, h := range hs {
			if h.set, err = CompileWith(n, h.ports, Tunnels{Port: tunPort, Remote: remote[k]}, nil); err != nil {
				t.Fatal(err)
			}
			// Through a cache that knew the host without its tunnels:
			// the same set.
			cache := NewCache()
			if _, err := cache.Compile(n, h.ports, Tunnels{}, nil); err != nil {
				t.Fatal(err)
			}
			if cached, err := cache.Compile(n, h.ports, Tunnels{Port: tunPort, Remote: remote[k]}, nil); err != nil || cached.String() != h.set.String() {
				d, a := DiffLines(h.set.String(), cached.String())
				t.Fatalf("net %d: the cache compiled another set for the tunnels (%v): -%v +%v", i, err, d, a)
			}
		}
		byEP := func(a netip.Addr) *host {
			for _, h := range hs {
				if h.ep == a {
					return h
				}
			}
			return nil
		}
		for k := 0; k < perNet; k++ {
			p := tenanttest.Packet(r, n)
			cases++
			var got []string
			walk := func(h *host, p tenant.Packet, in Tun) {
				res, err := h.set.RunTunnel(p, h.ports, in)
				if err != nil {
					t.Fatalf("net %d packet %+v: %v", i, p, err)
				}
				for j, o := range res.Out {
					if o != tunPort {
						got = append(got, h.names[o])
						continue
					}
					dst := byEP(res.Tun[j].Addr)
					if dst == nil || dst == h || res.Tun[j].ID == 0 {
						t.Fatalf("net %d packet %+v: tunnelled to %+v", i, p, res.Tun[j])
					}
					tunnelled++
					q := p
					q.InPort, q.VLAN = "vx", res.VLAN[j]
					res2, err := dst.set.RunTunnel(q, dst.ports, Tun{ID: res.Tun[j].ID, Addr: h.ep})
					if err != nil {
						t.Fatalf("net %d packet %+v on the far host: %v", i, q, err)
					}
					for _, o := range res2.Out {
						if o == tunPort {
							t.Fatalf("net %d packet %+v went back into the tunnel", i, q)
						}
						got = append(got, dst.names[o])
						far++
					}
				}
			}
			ingress := ingressTID(n, p)
			if p.InPort == tenanttest.UplinkPort {
				walk(hs[0], p, Tun{})
				walk(hs[1], p, Tun{})
			} else if attached[p.InPort] {
				for _, h := range hs {
					if _, ok := h.ports[p.InPort]; ok {
						walk(h, p, Tun{})
					}
				}
			}
			for _, o := range got {
				if vm, ok := n.VMByPort(o); ok && vm.Subnet.Domain.TID != ingress {
					t.Fatalf("packet %+v from domain %d delivered to vm %s of domain %d", p, ingress, vm.Name, vm.Subnet.Domain.TID)
				}
			}
			v := n.Decide(p)
			var want []string
			if v.Action == tenant.Pass && (attached[p.InPort] || p.InPort == tenanttest.UplinkPort) {
				for _, o := range v.Out {
					if (attached[o] || o == tenanttest.UplinkPort) && o != p.InPort {
						want = append(want, o)
					}
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("net %d: packet %+v\noracle: %v %v (%s)\nflows:  %v\npolicy: %+v", i, p, v.Action, want, v.Reason, got, ds)
			}
			if len(got) > 0 {
				passed++
			}
		}
	}
	t.Logf("%d cases, %d delivered, %d tunnelled, %d deliveries on the far host", cases, passed, tunnelled, far)
	if passed == 0 || passed == cases || far < passed/5 {
		t.Fatalf("degenerate sample: %d of %d delivered, %d on the far host", passed, cases, far)
	}
}
