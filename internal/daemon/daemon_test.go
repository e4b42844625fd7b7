package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/inventory"
	"secaas/internal/lab/labtest"
	"secaas/internal/node"
	"secaas/internal/store"
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

// TestEventRetention: the daemon's pass prunes by age and by count.
func TestEventRetention(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	dir := t.TempDir()
	d, err := New(ctx, Config{DB: ":memory:", Bridge: labtest.Bridge(t, "sctdr"), AdminToken: "retention-admin-token-0123",
		ImageRoot: filepath.Join(dir, "i"), RunRoot: filepath.Join(dir, "r"), ShmRoot: filepath.Join(dir, "s"), DataDir: t.TempDir(),
		EventMaxAge: time.Hour, EventMaxCount: 5, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i := 0; i < 12; i++ {
		if err := d.Controller.Sink().Events(ctx, []node.Event{{Host: "h", Seq: uint64(i + 1), Kind: "test.event", Detail: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	d.prune(ctx, time.Now())
	ev, err := d.Controller.Events(ctx, controller.Caller{Admin: true}, store.EventQuery{Kind: "test.event"})
	if err != nil || len(ev) != 5 || ev[0].Detail != "11" {
		t.Fatalf("by count: %d events, %v", len(ev), err)
	}
	d.prune(ctx, time.Now().Add(2*time.Hour)) // two hours later, all are older than an hour
	if ev, _ := d.Controller.Events(ctx, controller.Caller{Admin: true}, store.EventQuery{}); len(ev) != 0 {
		t.Fatalf("by age: %d events left", len(ev))
	}
}

// TestNoEventIsDropped: a burst far beyond any queue the agent could wait
// on is stored whole, in order, while the daemon runs.
func TestNoEventIsDropped(t *testing.T) {
	labtest.RequireOVS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	d, err := New(ctx, Config{DB: filepath.Join(dir, "s.db"), Bridge: labtest.Bridge(t, "sctde"), AdminToken: "burst-admin-token-012345",
		ImageRoot: filepath.Join(dir, "i"), RunRoot: filepath.Join(dir, "r"), ShmRoot: filepath.Join(dir, "s"), DataDir: t.TempDir(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	done := make(chan struct{})
	go func() { d.Run(ctx, time.Minute); close(done) }()
	const n = 20000
	t0 := time.Now()
	for i := 0; i < n; i++ {
		d.reporter.Put(agent.Event{Kind: "test.burst", Detail: fmt.Sprint(i)})
	}
	put := time.Since(t0)
	var got []store.Event
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		d.Store.View(ctx, func(tx *store.Tx) (err error) {
			got, err = tx.Events(store.EventQuery{Kind: "test.burst", Limit: 2 * n, Oldest: true})
			return err
		})
		if len(got) == n || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	<-done
	if len(got) != n {
		t.Fatalf("%d of %d events stored", len(got), n)
	}
	for i, e := range got {
		if e.Detail != fmt.Sprint(i) {
			t.Fatalf("event %d is %s: out of order", i, e.Detail)
		}
	}
	t.Logf("%d events queued in %s, stored in %s", n, put, time.Since(t0))
}
