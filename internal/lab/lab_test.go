package lab

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

// TestRemoveTouchesOnlyItsOwn: two labs of one policy (prefixes A and B)
// share the switch-side port names; removing or re-creating B's host
// never deletes A's link, port or namespace.
func TestRemoveTouchesOnlyItsOwn(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sctlr")
	mac, _ := tenant.ParseMAC("02:00:00:00:77:01")
	ip := netip.MustParsePrefix("10.77.0.1/24")
	a, err := AddHost(ctx, br, "sctlr-A-p1", "sctlrp1", mac, ip)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove(ctx, br)
	b := &Host{NS: "sctlr-B-p1", Port: "sctlrp1", MAC: mac, IP: ip}
	b.Remove(ctx, br) // lab down of a lab that is not there
	if _, err := AddHost(ctx, br, b.NS, b.Port, mac, ip); err == nil {
		t.Fatal("lab B took over lab A's port name")
	}
	if out, err := exec.Command("ip", "link", "show", "sctlrp1").CombinedOutput(); err != nil {
		t.Fatalf("lab A's link is gone: %s", out)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); !strings.Contains(string(out), "sctlr-A-p1") {
		t.Fatalf("lab A's namespace is gone: %s", out)
	}
	ports, err := br.Ports(ctx)
	if err != nil || ports["sctlrp1"] == 0 {
		t.Fatalf("lab A's bridge port is gone: %v %v", ports, err)
	}
	a.Remove(ctx, br)
	if err := exec.Command("ip", "link", "show", "sctlrp1").Run(); err == nil {
		t.Fatal("lab A's own removal left its link")
	}
	if ports, _ := br.Ports(ctx); ports["sctlrp1"] != 0 {
		t.Fatal("lab A's own removal left its port")
	}
}
