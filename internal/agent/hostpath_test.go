package agent_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

// TestHostPathAttacksOnTheNode: inventory records that point at host files
// through symlinks planted in the roots (or at files that are not what
// they claim) make the node's services fail with an error event; no host
// file outside the roots is read, written, replaced or removed, and no
// file the node did not create is removed.
func TestHostPathAttacksOnTheNode(t *testing.T) {
	labtest.RequireOVS(t)
	base := t.TempDir()
	root := filepath.Join(base, "root")
	os.MkdirAll(root, 0o700)
	secret := filepath.Join(base, "secret")
	const content = "root-only host secret, 0600"
	if err := os.WriteFile(secret, []byte(content+strings.Repeat("\x00", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Symlink(secret, filepath.Join(root, "ram-link"))       // "guest RAM" that is a host file
	os.Symlink("../secret", filepath.Join(root, "disk-link")) // a disk image that is a host file
	victim := filepath.Join(root, "someones-file")            // a regular file where a socket should go
	os.WriteFile(victim, []byte("not the node's"), 0o600)
	outSock := filepath.Join(base, "out.sock") // a socket outside the roots
	ln, err := net.Listen("unix", outSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Symlink(outSock, filepath.Join(root, "qmp-link"))
	roots, err := hostpath.OpenRoots(root)
	if err != nil {
		t.Fatal(err)
	}
	defer roots.Close()
	inv := inventory.Index([]inventory.Port{
		{Name: "hpa", Tenant: "eve", Memory: filepath.Join(root, "ram-link")},
		{Name: "hpb", Tenant: "eve", Disk: &inventory.Disk{Image: filepath.Join(root, "disk-link"), Mode: "front", Socket: filepath.Join(root, "front.sock")}},
		{Name: "hpc", Tenant: "eve", Disk: &inventory.Disk{Image: filepath.Join(root, "someones-file"), Mode: "front", Socket: victim}},
		{Name: "hpd", Tenant: "eve", QMP: filepath.Join(root, "qmp-link"), Disk: &inventory.Disk{Image: filepath.Join(root, "disk-link"), Mode: "bitmap", Node: "d"}},
	})
	domains := []tenant.Domain{{TID: 61, Name: "hp", Tenant: "eve", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "a", MAC: "02:00:00:00:61:01", IP: "10.61.0.1", Port: "hpa", VMI: &tenant.VMIPolicy{Interval: "200ms"}},
		{Name: "b", MAC: "02:00:00:00:61:02", IP: "10.61.0.2", Port: "hpb", AV: &tenant.AVPolicy{Schedule: "200ms"}},
		{Name: "c", MAC: "02:00:00:00:61:03", IP: "10.61.0.3", Port: "hpc", AV: &tenant.AVPolicy{Schedule: "200ms"}},
		{Name: "d", MAC: "02:00:00:00:61:04", IP: "10.61.0.4", Port: "hpd", AV: &tenant.AVPolicy{Schedule: "200ms"}},
	}}}}}
	var mu sync.Mutex
	errs := map[string]string{}
	br := labtest.Bridge(t, "scthp")
	_, a := enforceWith(t, br, domains, "scthp-", func(e agent.Event) {
		if strings.HasSuffix(e.Kind, ".error") {
			mu.Lock()
			errs[e.VM] = e.Detail
			mu.Unlock()
		}
	}, roots, inv)
	a.DataDir = t.TempDir()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(errs)
		mu.Unlock()
		if n == 4 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("error events for %d of 4 VMs: %v", n, errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.Close()
	mu.Lock()
	for vm, d := range errs {
		if strings.Contains(d, secret) || strings.Contains(d, base) {
			t.Errorf("vm %s: the event shows a host path: %s", vm, d)
		}
	}
	mu.Unlock()
	if b, _ := os.ReadFile(secret); !strings.HasPrefix(string(b), content) || len(b) != len(content)+4096 {
		t.Fatalf("the host file changed: %q", b[:64])
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "not the node's" {
		t.Fatalf("a file the node did not create was replaced: %q %v", b, err)
	}
	for _, l := range []string{"ram-link", "disk-link", "qmp-link"} {
		if _, err := os.Lstat(filepath.Join(root, l)); err != nil {
			t.Fatalf("%s removed: %v", l, err)
		}
	}
	if _, err := os.Stat(outSock); err != nil {
		t.Fatalf("the outside socket was removed: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "front.sock")); err == nil {
		t.Fatal("a front socket was created for an image outside the roots")
	}
}
