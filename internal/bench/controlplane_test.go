package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

// TestCPDomainValid: the benchmark's domains are valid and distinct.
func TestCPDomainValid(t *testing.T) {
	var ds []tenant.Domain
	for i := 0; i < 3; i++ {
		ds = append(ds, cpDomain(i, 300, 1000, "c"))
	}
	if _, err := tenant.NewNet(ds); err != nil {
		t.Fatal(err)
	}
}

// TestControlPlaneSmall runs the benchmark small against the real parts
// (OVS, NATS, two agents): every number is there, every sampled change
// was on the switch, no event is lost.
func TestControlPlaneSmall(t *testing.T) {
	labtest.RequireOVS(t)
	r, err := RunControlPlane(context.Background(), ControlPlaneOptions{Tenants: 2, VMs: 8, ACRs: 40, Changes: 6,
		ReadFor: 300 * time.Millisecond, Readers: 2, Events: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Changes != 6 || r.ChangeP50 <= 0 || r.ChangeP99 < r.ChangeP50 || r.Verified == 0 || r.VerifiedOK != r.Verified {
		t.Fatalf("changes: %+v", r)
	}
	if r.Reads == 0 || r.ReadsPerSec <= 0 || r.EventsStored != 2000 || len(r.Flows) != 2 || r.Flows[0] == 0 || r.Flows[1] == 0 {
		t.Fatalf("result: %+v", r)
	}
	var buf bytes.Buffer
	WriteControlPlane(&buf, r)
	if !strings.Contains(buf.String(), "0 lost") {
		t.Fatalf("table:\n%s", buf.String())
	}
}
