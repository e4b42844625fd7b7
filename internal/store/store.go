package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"secaas/internal/tenant"
)

// Sentinel errors, for errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// migrations are applied in order, each in its own transaction; a step
// is SQL or Go (for changes of the stored documents).
var migrations = []migration{
	sqlStep(`CREATE TABLE tenants (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		token_sha256 TEXT NOT NULL UNIQUE,
		created_at TEXT NOT NULL
	)`),
	sqlStep(`CREATE TABLE domains (
		tid INTEGER PRIMARY KEY,
		tenant_id TEXT NOT NULL REFERENCES tenants(id),
		doc TEXT NOT NULL,
		version INTEGER NOT NULL,
		updated_at TEXT NOT NULL
	)`),
	sqlStep(`CREATE TABLE events (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		time TEXT NOT NULL,
		tenant_id TEXT NOT NULL DEFAULT '',
		kind TEXT NOT NULL,
		subject TEXT NOT NULL DEFAULT '',
		detail TEXT NOT NULL DEFAULT ''
	)`),
	sqlStep(`CREATE INDEX events_tenant ON events(tenant_id, id)`),
	sqlStep(`CREATE TABLE results (
		tid INTEGER NOT NULL,
		vm TEXT NOT NULL,
		kind TEXT NOT NULL,
		tenant_id TEXT NOT NULL,
		time TEXT NOT NULL,
		doc TEXT NOT NULL,
		PRIMARY KEY (tid, vm, kind)
	)`),
	// The host inventory: switch ports, the tenant each is leased to, and a
	// VM's host resources (package inventory).
	sqlStep(`CREATE TABLE ports (
		name TEXT PRIMARY KEY,
		tenant_id TEXT NOT NULL REFERENCES tenants(id),
		doc TEXT NOT NULL,
		updated_at TEXT NOT NULL
	)`),
	leaseBoundPorts,
	unambiguousNames,
	// Desired state with generations (package node): the counter, the
	// hosts with the generation last published to each and the status
	// each last reported, and events that name the host and the host's
	// sequence number they came with, so that one delivered twice is
	// stored once.
	sqlStep(`CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)`),
	sqlStep(`INSERT INTO meta(key, value) VALUES ('generation', 0)`),
	sqlStep(`CREATE TABLE hosts (
		name TEXT PRIMARY KEY,
		published INTEGER NOT NULL DEFAULT 0,
		status TEXT NOT NULL DEFAULT '',
		seen_at TEXT NOT NULL DEFAULT ''
	)`),
	sqlStep(`ALTER TABLE events ADD COLUMN host TEXT NOT NULL DEFAULT ''`),
	sqlStep(`ALTER TABLE events ADD COLUMN origin TEXT`),
	sqlStep(`CREATE UNIQUE INDEX events_origin ON events(origin)`),
}

// Store is the control plane's database.
type Store struct {
	db  *sql.DB
	pg  bool // PostgreSQL, not SQLite
	now func() time.Time
}

// IsPostgres says whether dsn names a PostgreSQL database
// (postgres://... or postgresql://...).
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Redact is dsn fit for a log: a PostgreSQL URL's password is replaced.
func Redact(dsn string) string {
	if !IsPostgres(dsn) {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "postgres://(unparsable)"
	}
	return u.Redacted()
}

// Open opens (creating if needed) the database and migrates it: a SQLite
// file at path, ":memory:" for a throwaway store, or a PostgreSQL
// database named by a postgres:// URL.
func Open(ctx context.Context, path string) (*Store, error) {
	if IsPostgres(path) {
		return openPostgres(ctx, path)
	}
	dsn := "file:" + path + "?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)"
	if path == ":memory:" {
		dsn = "file::memory:?_pragma=foreign_keys(1)"
	}
	if path != ":memory:" {
		// The database and its -wal and -shm files (SQLite gives them the
		// database's mode) are the daemon's alone.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		err = f.Chmod(0o600)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		for _, side := range []string{"-wal", "-shm"} {
			if err := os.Chmod(path+side, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("open store: %w", err)
			}
		}
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(1) // one writer; also keeps :memory: one database
	s := &Store{db: db, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// openPostgres opens a PostgreSQL database and migrates it.
func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db.SetMaxOpenConns(8)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{db: db, pg: true, now: time.Now}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: database schema %d is newer than this program (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if err := migrations[v-1](&Tx{tx: tx, ctx: ctx, now: s.now().UTC(), pg: s.pg}); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, bind(`INSERT INTO schema_migrations(version) VALUES (?)`, s.pg), v); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
	}
	return nil
}

// SchemaVersion is the number of applied migrations.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// Tenant is a tenant account.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Event is one entry of the event history.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	Tenant  string    `json:"tenant,omitempty"`
	Kind    string    `json:"kind"`
	Subject string    `json:"subject,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	// Host is the host that reported it ("" for the control plane's own).
	Host string `json:"host,omitempty"`
	// Origin identifies an event a host reported ("host/seq"): the store
	// keeps one event per origin.
	Origin string `json:"-"`
}

// HashToken is how tokens are stored and looked up.
func HashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// Tx is one store transaction.
type Tx struct {
	tx  *sql.Tx
	ctx context.Context
	now time.Time
	pg  bool
}

// Update runs fn in a write transaction; an error from fn rolls it back.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&Tx{tx: tx, ctx: ctx, now: s.now().UTC(), pg: s.pg}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// View runs fn in a transaction that is always rolled back.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	return fn(&Tx{tx: tx, ctx: ctx, now: s.now().UTC(), pg: s.pg})
}

// CreateTenant adds a tenant whose API token hashes to tokenHash.
func (t *Tx) CreateTenant(id, name, tokenHash string) (Tenant, error) {
	// Checked first: after a failed statement PostgreSQL answers nothing
	// more in the transaction.
	if t.exists(`SELECT 1 FROM tenants WHERE id = ?`, id) {
		return Tenant{}, fmt.Errorf("tenant %q already exists: %w", id, ErrConflict)
	}
	_, err := t.exec(`INSERT INTO tenants(id, name, token_sha256, created_at) VALUES (?, ?, ?, ?)`,
		id, name, tokenHash, t.now.Format(time.RFC3339Nano))
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	return Tenant{ID: id, Name: name, CreatedAt: t.now}, nil
}

func (t *Tx) exists(q string, args ...any) bool {
	var one int
	return t.queryRow(q, args...).Scan(&one) == nil
}

// TenantByToken finds the tenant whose token hashes to tokenHash.
func (t *Tx) TenantByToken(tokenHash string) (Tenant, error) {
	return t.scanTenant(t.queryRow(`SELECT id, name, created_at FROM tenants WHERE token_sha256 = ?`, tokenHash))
}

// Tenant returns one tenant.
func (t *Tx) Tenant(id string) (Tenant, error) {
	return t.scanTenant(t.queryRow(`SELECT id, name, created_at FROM tenants WHERE id = ?`, id))
}

func (t *Tx) scanTenant(row *sql.Row) (Tenant, error) {
	var tn Tenant
	var at string
	if err := row.Scan(&tn.ID, &tn.Name, &at); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Tenant{}, fmt.Errorf("tenant: %w", ErrNotFound)
		}
		return Tenant{}, fmt.Errorf("tenant: %w", err)
	}
	tn.CreatedAt, _ = time.Parse(time.RFC3339Nano, at)
	return tn, nil
}

// Tenants lists every tenant.
func (t *Tx) Tenants() ([]Tenant, error) {
	rows, err := t.query(`SELECT id, name, created_at FROM tenants ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	var out []Tenant
	for rows.Next() {
		var tn Tenant
		var at string
		if err := rows.Scan(&tn.ID, &tn.Name, &at); err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		tn.CreatedAt, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, tn)
	}
	return out, rows.Err()
}

// DeleteTenant removes a tenant that owns no domain and leases no port.
func (t *Tx) DeleteTenant(id string) error {
	if t.exists(`SELECT 1 FROM domains WHERE tenant_id = ?`, id) {
		return fmt.Errorf("tenant %q still owns domains: %w", id, ErrConflict)
	}
	if t.exists(`SELECT 1 FROM ports WHERE tenant_id = ?`, id) {
		return fmt.Errorf("tenant %q still leases ports (secaas inventory delete): %w", id, ErrConflict)
	}
	res, err := t.exec(`DELETE FROM tenants WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete tenant: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("tenant %q: %w", id, ErrNotFound)
	}
	return nil
}

// Domains returns every domain, by TID.
func (t *Tx) Domains() ([]tenant.Domain, error) {
	rows, err := t.query(`SELECT doc, version FROM domains ORDER BY tid`)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	defer rows.Close()
	var out []tenant.Domain
	for rows.Next() {
		var doc string
		var version int
		if err := rows.Scan(&doc, &version); err != nil {
			return nil, fmt.Errorf("list domains: %w", err)
		}
		var d tenant.Domain
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return nil, fmt.Errorf("list domains: corrupt document: %w", err)
		}
		d.Revision = version
		out = append(out, d)
	}
	return out, rows.Err()
}

// Domain returns one domain.
func (t *Tx) Domain(tid int) (tenant.Domain, error) {
	d, _, err := t.domainStamped(tid)
	return d, err
}

// domainStamped returns one domain and its stamp (see DomainHead).
func (t *Tx) domainStamped(tid int) (tenant.Domain, string, error) {
	var doc, at string
	var d tenant.Domain
	err := t.queryRow(`SELECT doc, version, updated_at FROM domains WHERE tid = ?`, tid).Scan(&doc, &d.Revision, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return d, "", fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	if err != nil {
		return d, "", fmt.Errorf("get domain: %w", err)
	}
	rev := d.Revision
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return d, "", fmt.Errorf("get domain: corrupt document: %w", err)
	}
	d.Revision = rev
	return d, fmt.Sprintf("%d@%s", rev, at), nil
}

// DomainStamped returns one domain and its stamp (see DomainHead).
func (t *Tx) DomainStamped(tid int) (tenant.Domain, string, error) { return t.domainStamped(tid) }

// Revisions maps every domain's TID to its revision.
func (t *Tx) Revisions() (map[int]int, error) {
	rows, err := t.query(`SELECT tid, version FROM domains`)
	if err != nil {
		return nil, fmt.Errorf("list revisions: %w", err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var tid, rev int
		if err := rows.Scan(&tid, &rev); err != nil {
			return nil, fmt.Errorf("list revisions: %w", err)
		}
		out[tid] = rev
	}
	return out, rows.Err()
}

// DomainHead returns a domain's tenant, revision and stamp: the stamp
// (revision and time of the last write) differs for every stored
// document, also for a domain deleted and created again.
func (t *Tx) DomainHead(tid int) (tenantID string, revision int, stamp string, err error) {
	var at string
	err = t.queryRow(`SELECT tenant_id, version, updated_at FROM domains WHERE tid = ?`, tid).Scan(&tenantID, &revision, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, "", fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	if err != nil {
		return "", 0, "", fmt.Errorf("get domain: %w", err)
	}
	return tenantID, revision, fmt.Sprintf("%d@%s", revision, at), nil
}

// PutDomain inserts or replaces a domain document and returns its new
// revision (the version column; the document does not keep it).
func (t *Tx) PutDomain(d tenant.Domain) (int, error) {
	d.Revision = 0
	doc, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("put domain: %w", err)
	}
	if !t.exists(`SELECT 1 FROM tenants WHERE id = ?`, d.Tenant) {
		return 0, fmt.Errorf("tenant %q: %w", d.Tenant, ErrNotFound)
	}
	var rev int
	err = t.queryRow(`INSERT INTO domains(tid, tenant_id, doc, version, updated_at) VALUES (?, ?, ?, 1, ?)
		ON CONFLICT(tid) DO UPDATE SET doc = excluded.doc, tenant_id = excluded.tenant_id, version = domains.version + 1, updated_at = excluded.updated_at
		RETURNING version`,
		d.TID, d.Tenant, string(doc), t.now.Format(time.RFC3339Nano)).Scan(&rev)
	if err != nil {
		return 0, fmt.Errorf("put domain: %w", err)
	}
	return rev, nil
}

// DeleteDomain removes a domain.
func (t *Tx) DeleteDomain(tid int) error {
	res, err := t.exec(`DELETE FROM domains WHERE tid = ?`, tid)
	if err != nil {
		return fmt.Errorf("delete domain: %w", err)
	}
	if _, err := t.exec(`DELETE FROM results WHERE tid = ?`, tid); err != nil {
		return fmt.Errorf("delete domain results: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("domain %d: %w", tid, ErrNotFound)
	}
	return nil
}

// Result is the latest result of one kind (e.g. "vmi") for one VM.
type Result struct {
	TID    int
	VM     string
	Kind   string
	Tenant string
	Time   time.Time
	Doc    json.RawMessage
}

// PutResult replaces the VM's latest result of its kind.
func (t *Tx) PutResult(r Result) error {
	if !json.Valid(r.Doc) {
		return errors.New("put result: document is not JSON")
	}
	_, err := t.exec(`INSERT INTO results(tid, vm, kind, tenant_id, time, doc) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(tid, vm, kind) DO UPDATE SET tenant_id = excluded.tenant_id, time = excluded.time, doc = excluded.doc`,
		r.TID, r.VM, r.Kind, r.Tenant, t.now.Format(time.RFC3339Nano), string(r.Doc))
	if err != nil {
		return fmt.Errorf("put result: %w", err)
	}
	return nil
}

// Result returns the VM's latest result of a kind.
func (t *Tx) Result(tid int, vm, kind string) (Result, error) {
	r := Result{TID: tid, VM: vm, Kind: kind}
	var at, doc string
	err := t.queryRow(`SELECT tenant_id, time, doc FROM results WHERE tid = ? AND vm = ? AND kind = ?`, tid, vm, kind).
		Scan(&r.Tenant, &at, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%s result for vm %q: %w", kind, vm, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("get result: %w", err)
	}
	r.Time, _ = time.Parse(time.RFC3339Nano, at)
	r.Doc = json.RawMessage(doc)
	return r, nil
}

// AddEvent appends to the event history and returns the stored event.
// An event whose Origin is already stored is not stored again (its ID
// stays 0).
func (t *Tx) AddEvent(e Event) (Event, error) {
	e.Time = t.now
	var origin any
	if e.Origin != "" {
		origin = e.Origin
	}
	err := t.queryRow(`INSERT INTO events(time, tenant_id, kind, subject, detail, host, origin) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING RETURNING id`,
		e.Time.Format(time.RFC3339Nano), e.Tenant, e.Kind, e.Subject, e.Detail, e.Host, origin).Scan(&e.ID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) { // no row: stored before
		return e, fmt.Errorf("add event: %w", err)
	}
	return e, nil
}

// EventQuery selects events.
type EventQuery struct {
	Tenant string    // "" means every tenant's (and the host's)
	After  int64     // only ids above
	Since  time.Time // only events at or after (zero: any)
	Kind   string    // exact kind, or a prefix ending in "." ("vmi.")
	VM     string    // only events about this VM (subject "vm/NAME")
	Limit  int
	Oldest bool // oldest first (the stream); default newest first
}

// Events returns up to q.Limit events that match q.
func (t *Tx) Events(q EventQuery) ([]Event, error) {
	sq := `SELECT id, time, tenant_id, kind, subject, detail, host FROM events WHERE id > ?`
	args := []any{q.After}
	if q.Tenant != "" {
		sq += ` AND tenant_id = ?`
		args = append(args, q.Tenant)
	}
	if !q.Since.IsZero() {
		// Times are stored as RFC 3339 text in UTC, which sorts as time.
		sq += ` AND time >= ?`
		args = append(args, q.Since.UTC().Format(time.RFC3339Nano))
	}
	if prefix, ok := strings.CutSuffix(q.Kind, "."); ok {
		sq += ` AND substr(kind, 1, ?) = ?`
		args = append(args, len(prefix)+1, prefix+".")
	} else if q.Kind != "" {
		sq += ` AND kind = ?`
		args = append(args, q.Kind)
	}
	if q.VM != "" {
		sq += ` AND subject = ?`
		args = append(args, "vm/"+q.VM)
	}
	if q.Oldest {
		sq += ` ORDER BY id LIMIT ?`
	} else {
		sq += ` ORDER BY id DESC LIMIT ?`
	}
	args = append(args, q.Limit)
	q2, args2 := sq, args
	rows, err := t.query(q2, args2...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Tenant, &e.Kind, &e.Subject, &e.Detail, &e.Host); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// CountEvents counts the events of a kind.
func (t *Tx) CountEvents(kind string) (int, error) {
	var n int
	if err := t.queryRow(`SELECT COUNT(*) FROM events WHERE kind = ?`, kind).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// PruneEvents enforces the event history's retention: it deletes events
// older than before (zero: none by age) and all but the newest keep
// (0: none by count), and says how many went.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, keep int) (int64, error) {
	var n int64
	err := s.Update(ctx, func(tx *Tx) error {
		if !before.IsZero() {
			res, err := tx.exec(`DELETE FROM events WHERE time < ?`, before.UTC().Format(time.RFC3339Nano))
			if err != nil {
				return fmt.Errorf("prune events: %w", err)
			}
			k, _ := res.RowsAffected()
			n += k
		}
		if keep > 0 {
			res, err := tx.exec(`DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)`, keep)
			if err != nil {
				return fmt.Errorf("prune events: %w", err)
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return nil
	})
	return n, err
}
