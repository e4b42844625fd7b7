package controller

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

func dom(tid int, ports ...string) tenant.Domain {
	d := tenant.Domain{TID: tid, Name: "d", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s"}}}
	for i, p := range ports {
		d.Subnets[0].VMs = append(d.Subnets[0].VMs, tenant.VM{Name: "v" + p, MAC: "02:00:00:00:00:0" + string(rune('1'+i)), IP: "10.0.0.1", Port: p})
	}
	return d
}

// TestPlacement: a domain is on the hosts of its ports; an unrecorded
// port, or no port at all, is the default host's.
func TestPlacement(t *testing.T) {
	ports := inventory.Ports{"a1": {Name: "a1", Host: "hv-a"}, "b1": {Name: "b1", Host: "hv-b"}, "x": {Name: "x"}}
	for _, tc := range []struct {
		d    tenant.Domain
		want []string
	}{
		{dom(1, "a1"), []string{"hv-a"}},
		{dom(2, "a1", "b1"), []string{"hv-a", "hv-b"}},
		{dom(3, "x", "unrecorded"), []string{"def"}},
		{dom(4), []string{"def"}},
		{tenant.Domain{TID: 5, Uplinks: []string{"b1"}}, []string{"hv-b"}},
	} {
		if got := placement(tc.d, ports, "def"); !slices.Equal(got, tc.want) {
			t.Errorf("domain %d: %v, want %v", tc.d.TID, got, tc.want)
		}
	}
}

// TestDesiredStates: each host gets the domains placed on it, whole, and
// only its own inventory records; the default host also gets a bare
// record for each port no record names (so its agent knows the VM is its
// own); known hosts with nothing get an empty state; the digest ignores
// the generation.
func TestDesiredStates(t *testing.T) {
	c := &Controller{DefaultHost: "def"}
	ports := inventory.Ports{"a1": {Name: "a1", Tenant: "acme", Host: "hv-a", Memory: "/dev/shm/a1"}, "b1": {Name: "b1", Tenant: "acme", Host: "hv-b"}}
	all := []tenant.Domain{dom(1, "a1"), dom(2, "a1", "b1"), dom(3, "loose")}
	st := c.desiredStates(all, ports, []string{"hv-c"}, 7)
	tids := func(h string) (out []int) {
		for _, d := range st[h].Domains {
			out = append(out, d.TID)
		}
		return out
	}
	if !slices.Equal(tids("hv-a"), []int{1, 2}) || !slices.Equal(tids("hv-b"), []int{2}) || !slices.Equal(tids("def"), []int{3}) || len(tids("hv-c")) != 0 {
		t.Fatalf("domains: a %v b %v def %v c %v", tids("hv-a"), tids("hv-b"), tids("def"), tids("hv-c"))
	}
	if _, ok := st["hv-c"]; !ok {
		t.Fatal("a known host with nothing got no state (it would never be cleared)")
	}
	if len(st["hv-a"].Ports) != 1 || st["hv-a"].Ports["a1"].Memory != "/dev/shm/a1" || len(st["hv-b"].Ports) != 1 {
		t.Fatalf("ports: %+v %+v", st["hv-a"].Ports, st["hv-b"].Ports)
	}
	if p, ok := st["def"].Ports["loose"]; !ok || p.Tenant != "acme" || p.Memory != "" || len(st["def"].Ports) != 1 {
		t.Fatalf("default host's ports: %+v", st["def"].Ports)
	}
	for h, d := range st {
		if d.Generation != 7 || d.Host != h {
			t.Fatalf("%s: %+v", h, d)
		}
	}
	again := c.desiredStates(all, ports, nil, 8)
	if digest(again["hv-a"]) != digest(st["hv-a"]) {
		t.Fatal("the digest depends on the generation")
	}
	before := map[string][32]byte{}
	for h, d := range st {
		before[h] = digest(d)
	}
	all[1].Subnets[0].ACRs = []tenant.ACR{{Priority: 1, Action: tenant.Pass}}
	if moved := c.desiredStates(all, ports, nil, 9); digest(moved["hv-b"]) == before["hv-b"] || digest(moved["def"]) != before["def"] {
		t.Fatal("a change shows on the wrong hosts")
	}
}

// TestDesiredRemote: a host that reported a tunnel endpoint learns, for
// each VM of its domains on another host with an endpoint, that host's
// endpoint; a host without one learns nothing, and nothing points at it.
func TestDesiredRemote(t *testing.T) {
	c := &Controller{DefaultHost: "def", status: map[string]node.Status{
		"hv-a": {Host: "hv-a", Endpoint: "192.0.2.1"},
		"hv-b": {Host: "hv-b", Endpoint: "192.0.2.2"},
		"def":  {Host: "def"},
	}}
	ports := inventory.Ports{"a1": {Name: "a1", Host: "hv-a"}, "b1": {Name: "b1", Host: "hv-b"}}
	all := []tenant.Domain{dom(1, "a1"), dom(2, "a1", "b1", "loose")}
	st := c.desiredStates(all, ports, nil, 3)
	want := map[string]map[string]netip.Addr{
		"hv-a": {"b1": netip.MustParseAddr("192.0.2.2")},
		"hv-b": {"a1": netip.MustParseAddr("192.0.2.1")},
		"def":  nil,
	}
	for h, w := range want {
		if !maps.Equal(st[h].Remote, w) {
			t.Errorf("%s: remote %v, want %v", h, st[h].Remote, w)
		}
	}
}
