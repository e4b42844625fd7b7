package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/ext4"
	"secaas/internal/inventory"
	"secaas/internal/lab/labtest"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

// TestRestartKeepsState: a daemon on a database file, stopped and started
// again on the same bridge, comes back with the same domains and the same
// flows on the switch; the database is private.
func TestRestartKeepsState(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sctdm")
	dir := t.TempDir()
	cfg := Config{DB: filepath.Join(dir, "db", "secaas.db"), Bridge: br, TokenFile: filepath.Join(dir, "admin.token"),
		ImageRoot: filepath.Join(dir, "images"), RunRoot: filepath.Join(dir, "run"), ShmRoot: filepath.Join(dir, "shm"),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin := controller.Caller{Admin: true}
	if _, _, err := d.Controller.CreateTenant(ctx, admin, "acme", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Controller.PutPort(ctx, admin, inventory.Port{Name: "dma", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	dom := tenant.Domain{TID: 81, Name: "d", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "a", MAC: "02:00:00:00:81:01", IP: "10.81.0.1", Port: "dma"}}, ACRs: []tenant.ACR{{Priority: 1, Action: "pass"}}}}}
	if _, err := d.Controller.CreateDomain(ctx, admin, dom); err != nil {
		t.Fatal(err)
	}
	flows := d.Agent.Flows()
	d.Close()
	d, err = New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ds, err := d.Controller.Domains(ctx, admin)
	if err != nil || len(ds) != 1 || ds[0].TID != 81 {
		t.Fatalf("after restart: %+v %v", ds, err)
	}
	if d.Agent.Flows() != flows {
		t.Fatal("the restarted daemon wants other flows")
	}
	if diff, err := br.Diff(ctx, flows); err != nil || diff != "" {
		t.Fatalf("the switch differs after the restart: %v %s", err, diff)
	}
}

// TestNodeErrors: the node contract's errors come from the node's own.
func TestNodeErrors(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{fmt.Errorf("lookup /x: %w", ext4.ErrNotFound), node.ErrNotFound},
		{agent.ErrNoAV, node.ErrNoService},
	} {
		if err := nodeErr(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v", tc.in, err)
		}
	}
	if nodeErr(nil) != nil {
		t.Error("nil")
	}
	other := errors.New("disk on fire")
	if err := nodeErr(other); !errors.Is(err, other) || errors.Is(err, node.ErrNotFound) {
		t.Errorf("other: %v", err)
	}
}
