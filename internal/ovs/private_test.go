package ovs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
	"secaas/internal/ovs"
)

// TestPrivateInstance starts a second Open vSwitch beside the host's (with
// the dummy datapath, so it claims no host device) and checks that every
// command of a bridge handle goes to it and not to the host's switch.
func TestPrivateInstance(t *testing.T) {
	labtest.RequireOVS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := ovs.StartPrivate(ctx, t.TempDir(), nil, "--enable-dummy=override")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if out, err := in.Appctl(ctx, "version"); err != nil || !strings.Contains(string(out), "Open vSwitch") {
		t.Fatalf("appctl version: %q, %v", out, err)
	}
	br := in.Bridge("prvtest")
	if err := br.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	other := br.Sibling("prvtest2")
	if err := other.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := br.Replace(ctx, "priority=7,ip,nw_dst=10.9.9.9,actions=drop\n"); err != nil {
		t.Fatal(err)
	}
	flows, err := br.DumpFlows(ctx)
	if err != nil || !strings.Contains(flows, "nw_dst=10.9.9.9") {
		t.Fatalf("private bridge flows: %q, %v", flows, err)
	}
	// The host's switch knows neither bridge.
	if _, err := ovs.NewBridge("prvtest").DumpFlows(ctx); err == nil {
		t.Fatal("the host's switch has the private bridge")
	}
	in.Stop()
	if _, err := br.DumpFlows(ctx); err == nil {
		t.Fatal("the private switch still answers after Stop")
	}
}
