package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"secaas/internal/tenant"
)

func TestStoreRoundTripAndRollback(t *testing.T) { engines(t, testStoreRoundTripAndRollback) }

func testStoreRoundTripAndRollback(t *testing.T, open func() *Store) {
	ctx := context.Background()
	s := open()
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.CreateTenant("acme", "Acme", HashToken("tok")); err != nil {
			return err
		}
		_, err := tx.PutDomain(tenant.Domain{TID: 5, Name: "d", Tenant: "acme"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing transaction leaves nothing behind.
	boom := errors.New("apply failed")
	err = s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.PutDomain(tenant.Domain{TID: 6, Name: "e", Tenant: "acme"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	s.Close()
	s = open() // reopen: migrations are idempotent
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d", v)
	}
	s.View(ctx, func(tx *Tx) error {
		ds, err := tx.Domains()
		if err != nil || len(ds) != 1 || ds[0].TID != 5 {
			t.Fatalf("domains %+v %v", ds, err)
		}
		if d, err := tx.Domain(5); err != nil || d.Name != "d" || d.Revision != 1 {
			t.Fatalf("domain 5: %+v %v", d, err)
		}
		if revs, err := tx.Revisions(); err != nil || len(revs) != 1 || revs[5] != 1 {
			t.Fatalf("revisions %v %v", revs, err)
		}
		if _, err := tx.Domain(6); !errors.Is(err, ErrNotFound) {
			t.Fatalf("domain 6 (rolled back): %v", err)
		}
		tn, err := tx.TenantByToken(HashToken("tok"))
		if err != nil || tn.ID != "acme" {
			t.Fatalf("by token: %+v %v", tn, err)
		}
		if _, err := tx.TenantByToken(HashToken("nope")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}
		return nil
	})
	err = s.Update(ctx, func(tx *Tx) error { return tx.DeleteTenant("acme") })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("delete tenant with domains: %v", err)
	}
	err = s.Update(ctx, func(tx *Tx) error { _, err := tx.CreateTenant("acme", "x", HashToken("t2")); return err })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		_, err := tx.PutDomain(tenant.Domain{TID: 9, Name: "x", Tenant: "ghost"})
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("domain of unknown tenant: %v", err)
	}
}

func TestPruneEvents(t *testing.T) { engines(t, testPruneEvents) }

func testPruneEvents(t *testing.T, open func() *Store) {
	ctx := context.Background()
	s := open()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		s.now = func() time.Time { return t0.Add(time.Duration(i) * time.Hour) }
		if err := s.Update(ctx, func(tx *Tx) error { _, err := tx.AddEvent(Event{Kind: "k", Detail: fmt.Sprint(i)}); return err }); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int, oldest string) {
		s.View(ctx, func(tx *Tx) error {
			ev, _ := tx.Events(EventQuery{Limit: 100})
			n = len(ev)
			if n > 0 {
				oldest = ev[n-1].Detail
			}
			return nil
		})
		return
	}
	// By age: the events of the first 3 hours go.
	if n, err := s.PruneEvents(ctx, t0.Add(3*time.Hour), 0); err != nil || n != 3 {
		t.Fatalf("by age: %d %v", n, err)
	}
	if n, oldest := count(); n != 7 || oldest != "3" {
		t.Fatalf("after age: %d, oldest %s", n, oldest)
	}
	// By count: the newest 4 stay.
	if n, err := s.PruneEvents(ctx, time.Time{}, 4); err != nil || n != 3 {
		t.Fatalf("by count: %d %v", n, err)
	}
	if n, oldest := count(); n != 4 || oldest != "6" {
		t.Fatalf("after count: %d, oldest %s", n, oldest)
	}
	if n, err := s.PruneEvents(ctx, time.Time{}, 4); err != nil || n != 0 {
		t.Fatalf("nothing more to prune: %d %v", n, err)
	}
}

// TestGenerationsHostsAndEventOrigins: generations only grow; a host's
// published generation never goes down; statuses are kept per host; an
// event reported twice (same origin) is stored once.
func TestGenerationsHostsAndEventOrigins(t *testing.T) { engines(t, testGenerations) }

func testGenerations(t *testing.T, open func() *Store) {
	ctx := context.Background()
	s := open()
	var g1, g2 int64
	err := s.Update(ctx, func(tx *Tx) (err error) {
		if g1, err = tx.NextGeneration(); err != nil {
			return err
		}
		g2, err = tx.NextGeneration()
		return err
	})
	if err != nil || g1 != 1 || g2 != 2 {
		t.Fatalf("generations %d %d %v", g1, g2, err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		for _, p := range []struct {
			h string
			g int64
		}{{"hv1", 2}, {"hv1", 1}, {"hv.2", 2}} {
			if err := tx.PublishedTo(p.h, p.g); err != nil {
				return err
			}
		}
		return tx.PutHostStatus("hv1", []byte(`{"generation": 2}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.PutHostStatus("hv1", []byte(`not json`)) }); err == nil {
		t.Fatal("a status that is not JSON was stored")
	}
	s.View(ctx, func(tx *Tx) error {
		g, err := tx.Generation()
		hs, err2 := tx.Hosts()
		if err != nil || err2 != nil || g != 2 || len(hs) != 2 || hs[1].Name != "hv1" || hs[1].Published != 2 ||
			string(hs[1].Status) != `{"generation": 2}` || hs[1].SeenAt.IsZero() || hs[0].Status != nil {
			t.Fatalf("generation %d, hosts %+v, %v %v", g, hs, err, err2)
		}
		return nil
	})
	add := func(e Event) int64 {
		t.Helper()
		var out Event
		if err := s.Update(ctx, func(tx *Tx) (err error) { out, err = tx.AddEvent(e); return err }); err != nil {
			t.Fatal(err)
		}
		return out.ID
	}
	if id := add(Event{Kind: "k", Host: "hv1", Origin: "hv1/7"}); id == 0 {
		t.Fatal("first delivery not stored")
	}
	if id := add(Event{Kind: "k", Host: "hv1", Origin: "hv1/7"}); id != 0 {
		t.Fatal("second delivery stored again")
	}
	add(Event{Kind: "k"})
	add(Event{Kind: "k"}) // events of the control plane have no origin
	s.View(ctx, func(tx *Tx) error {
		ev, err := tx.Events(EventQuery{Kind: "k", Limit: 10, Oldest: true})
		if err != nil || len(ev) != 3 || ev[0].Host != "hv1" || ev[1].Host != "" {
			t.Fatalf("events %+v %v", ev, err)
		}
		return nil
	})
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteHost("hv.2") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteHost("hv.2") }); err == nil {
		t.Fatal("deleted a host twice")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://secaas:hunter2@db:5432/secaas": "postgres://secaas:xxxxx@db:5432/secaas",
		"postgres://secaas@/secaas?host=/run/pg":   "postgres://secaas@/secaas?host=/run/pg",
		"/var/lib/secaas/secaas.db":                "/var/lib/secaas/secaas.db",
	} {
		if got := Redact(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
}
