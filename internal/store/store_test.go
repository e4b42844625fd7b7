package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"secaas/internal/tenant"
)

func TestStoreRoundTripAndRollback(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
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
	s, err = Open(ctx, path) // reopen: migrations are idempotent
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d", v)
	}
	s.View(ctx, func(tx *Tx) error {
		ds, err := tx.Domains()
		if err != nil || len(ds) != 1 || ds[0].TID != 5 {
			t.Fatalf("domains %+v %v", ds, err)
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

func TestPruneEvents(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
