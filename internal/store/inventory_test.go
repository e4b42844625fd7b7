package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"secaas/internal/inventory"
	"secaas/internal/tenant"
)

// TestLeaseBoundPortsMigration opens a store written by the version
// before the host inventory (schema 5) whose tenant wrote host paths into
// its service policies: the migration leases the bound ports to that
// tenant, drops the paths (they were the tenant's choice) and says so in
// an event.
func TestLeaseBoundPortsMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	for v := 1; v <= 5; v++ {
		tx, _ := db.Begin()
		if err := migrations[v-1](&Tx{tx: tx, ctx: ctx}); err != nil {
			t.Fatal(err)
		}
		tx.Exec(`INSERT INTO schema_migrations(version) VALUES (?)`, v)
		tx.Commit()
	}
	old := `{"tid":7,"name":"d","tenant":"acme","uplinks":["up0"],"subnets":[{"name":"s","cidr":"10.0.0.9/24","vms":[
		{"name":"a","mac":"02:00:00:00:00:01","ip":"10.0.0.1","port":"pa","vmi":{"memory":"/etc/shadow","interval":"2s"}},
		{"name":"b","mac":"02:00:00:00:00:02","ip":"10.0.0.2","port":"pb","av":{"mode":"front","disk":"/root/x","socket":"/etc/passwd","paths":["/x"]}},
		{"name":"any","mac":"02:00:00:00:00:03","ip":"10.0.0.3","port":"pc"}]}]}`
	if _, err := db.Exec(`INSERT INTO tenants VALUES ('acme', 'Acme', 'h', '2026-01-01T00:00:00Z')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO domains VALUES (7, 'acme', ?, 1, '2026-01-01T00:00:00Z')`, old); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ports []inventory.Port
	var doc string
	var detail string
	err = s.View(ctx, func(tx *Tx) error {
		var err error
		if ports, err = tx.Ports(); err != nil {
			return err
		}
		if err := tx.tx.QueryRow(`SELECT doc FROM domains WHERE tid = 7`).Scan(&doc); err != nil {
			return err
		}
		return tx.tx.QueryRow(`SELECT detail FROM events WHERE kind = 'policy.host_fields_dropped'`).Scan(&detail)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"pa": false, "pb": false, "pc": false, "up0": true}
	if len(ports) != 4 {
		t.Fatalf("ports %+v", ports)
	}
	for _, p := range ports {
		if up, ok := want[p.Name]; !ok || p.Uplink != up || p.Tenant != "acme" || len(p.Paths()) != 0 {
			t.Errorf("port %+v", p)
		}
	}
	for _, gone := range []string{"/etc/shadow", "/root/x", "/etc/passwd", `"mode"`} {
		if strings.Contains(doc, gone) {
			t.Errorf("%s is still in %s", gone, doc)
		}
	}
	if !strings.Contains(doc, `"interval":"2s"`) || !strings.Contains(doc, `"paths":["/x"]`) {
		t.Errorf("the tenant's own settings were lost: %s", doc)
	}
	if !strings.Contains(detail, "vmi memory") || !strings.Contains(detail, "av disk") {
		t.Errorf("event detail %q", detail)
	}
	// The migrated documents load and validate: the VM named "any" is
	// renamed, the prefix masked.
	var ds []tenant.Domain
	if err := s.View(ctx, func(tx *Tx) (err error) { ds, err = tx.Domains(); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := tenant.NewNet(ds); err != nil {
		t.Fatalf("the migrated domain does not validate: %v", err)
	}
	if ds[0].Subnets[0].CIDR != "10.0.0.0/24" || ds[0].Subnets[0].VMs[2].Name != "vm-any" {
		t.Fatalf("migrated: %+v", ds[0].Subnets[0])
	}
}

// TestFilesArePrivate: the database and its WAL and SHM files are 0600,
// also when an earlier version left them world-readable.
func TestFilesArePrivate(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	for round := 0; round < 2; round++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, func(tx *Tx) error {
			_, err := tx.CreateTenant("t"+string(rune('a'+round)), "T", HashToken(path+string(rune(round))))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("round %d: %s is %v", round, f, st.Mode().Perm())
			}
		}
		s.Close()
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			os.Chmod(f, 0o644) // as an earlier version left them
		}
	}
}

func TestPortsCRUD(t *testing.T) { engines(t, testPortsCRUD) }

func testPortsCRUD(t *testing.T, open func() *Store) {
	ctx := context.Background()
	s := open()
	p := inventory.Port{Name: "p1", Tenant: "acme", Memory: "/dev/shm/g"}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.PutPort(p) }); err == nil {
		t.Fatal("a port leased to a tenant that does not exist")
	}
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.CreateTenant("acme", "Acme", HashToken("x")); err != nil {
			return err
		}
		return tx.PutPort(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteTenant("acme") }); err == nil {
		t.Fatal("deleted a tenant that leases a port")
	}
	err = s.View(ctx, func(tx *Tx) error {
		got, err := tx.Port("p1")
		if err != nil || got.Memory != p.Memory {
			t.Errorf("port %+v %v", got, err)
		}
		if _, err := tx.Port("p2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a missing port: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeletePort("p1") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(tx *Tx) error { return tx.DeletePort("p1") }); err == nil {
		t.Fatal("deleted a port twice")
	}
}
