package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The store's tests run on both engines: SQLite, and a real PostgreSQL
// server (Debian's package) that the tests start in a private directory,
// listening only on a unix socket, and stop at the end.

var pgServer struct {
	once sync.Once
	dir  string // socket directory; "" when not started
	err  error
	stop func()
	n    atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer.stop != nil {
		pgServer.stop()
	}
	os.Exit(code)
}

// pgBin finds a PostgreSQL server program.
func pgBin(name string) (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) == 0 {
		return "", fmt.Errorf("%s not found (Debian's postgresql package; make test installs it)", name)
	}
	return matches[len(matches)-1], nil
}

// startPostgres starts a server as the postgres user (root may not run
// it) on a unix socket in a fresh directory.
func startPostgres() (dir string, stop func(), err error) {
	initdb, err := pgBin("initdb")
	if err != nil {
		return "", nil, err
	}
	pgctl, _ := pgBin("pg_ctl")
	dir, err = os.MkdirTemp("", "secaas-pg-")
	if err != nil {
		return "", nil, err
	}
	as := func(args ...string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("root needs the postgres user to run the server: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return "", nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", nil, err
		}
		as = func(args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := as(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -c fsync=off -c full_page_writes=off", dir)
	if out, err := as(pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return "", nil, fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
	}
	stop = func() {
		as(pgctl, "-D", data, "-m", "immediate", "-w", "stop").Run()
		os.RemoveAll(dir)
	}
	return dir, stop, nil
}

func pgDSN(dir, db string) string {
	return fmt.Sprintf("postgres://postgres@/%s?host=%s&sslmode=disable", db, dir)
}

// newPostgresDB makes a fresh database on the test server and returns its
// DSN; it skips (fails under CI) when no server can run here.
func newPostgresDB(t *testing.T) string {
	t.Helper()
	pgServer.once.Do(func() { pgServer.dir, pgServer.stop, pgServer.err = startPostgres() })
	if pgServer.err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL: %v", pgServer.err)
		}
		t.Skipf("skipping the PostgreSQL run: %v", pgServer.err)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), pgServer.n.Add(1))
	admin, err := sql.Open("pgx", pgDSN(pgServer.dir, "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return pgDSN(pgServer.dir, name)
}

// engines runs fn once per engine; open opens that run's one database
// (again and again: a reopen sees what was stored).
func engines(t *testing.T, fn func(t *testing.T, open func() *Store)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "s.db")
			if engine == "postgres" {
				dsn = newPostgresDB(t)
			}
			var opened []*Store
			t.Cleanup(func() {
				for _, s := range opened {
					s.Close()
				}
			})
			fn(t, func() *Store {
				t.Helper()
				s, err := Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				opened = append(opened, s)
				return s
			})
		})
	}
}
