package labtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/ovs"
)

// Missing skips (or, under CI, fails) the test because of reason.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("integration prerequisite missing under CI: %s", reason)
	}
	t.Skipf("skipping integration test: %s (run make test as root: it installs and starts what is needed)", reason)
}

// RequireOVS needs root, namespaces and a running Open vSwitch.
func RequireOVS(t testing.TB) {
	t.Helper()
	if testing.Short() {
		Missing(t, "-short")
	}
	if os.Geteuid() != 0 {
		Missing(t, "needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		Missing(t, "iproute2 (ip) not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ovs.Available(ctx); err != nil {
		Missing(t, "open vswitch is not running: "+err.Error())
	}
}

// Bridge makes a fresh bridge for the test and deletes it afterwards.
func Bridge(t testing.TB, name string) *ovs.Bridge {
	t.Helper()
	ctx := context.Background()
	br := ovs.NewBridge(name)
	br.Delete(ctx)
	if err := br.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Delete(context.Background()) })
	return br
}

// Table2 writes the paper's Table 2 policy (examples/table2.yaml, found from
// the test's package directory via root) with port names vm1.. renamed
// prefix+"1".., so that tests in parallel packages and a running demo never
// share a host interface name. It returns the file's path.
func Table2(t testing.TB, root, prefix string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "examples/table2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "table2.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "port: vm", "port: "+prefix)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// DataDir finds the shared test data (../shared/data of the checkout, or
// $SECAAS_DATA): real captures that must never be copied into the project.
func DataDir(t testing.TB) string {
	t.Helper()
	d, ok := FindDataDir()
	if !ok {
		Missing(t, "shared test data not found (set SECAAS_DATA)")
	}
	return d
}

// FindDataDir looks for the shared test data: $SECAAS_DATA, a shared/data
// beside any parent of the working directory, or /work/shared/data.
func FindDataDir() (string, bool) {
	if d := os.Getenv("SECAAS_DATA"); d != "" {
		return d, true
	}
	wd, _ := os.Getwd()
	for dir := wd; ; dir = filepath.Dir(dir) {
		cand := filepath.Join(dir, "shared", "data")
		if st, err := os.Stat(filepath.Join(cand, "pcaps")); err == nil && st.IsDir() {
			return cand, true
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	if st, err := os.Stat("/work/shared/data/pcaps"); err == nil && st.IsDir() {
		return "/work/shared/data", true
	}
	return "", false
}
