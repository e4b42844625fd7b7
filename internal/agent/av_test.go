package agent_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/hostpath"
	"secaas/internal/hyperav"
	"secaas/internal/inventory"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

// TestAVServiceFrontMode: a VM whose policy asks for HyperAV in front mode
// gets its disk served by the agent; the guest boots from that socket.
// EICAR written in the guest raises one av.infected event for the VM's
// tenant within a round and is isolated; on-demand scans and the status go
// through the agent; a report reaches the control plane every round.
func TestAVServiceFrontMode(t *testing.T) {
	labtest.RequireOVS(t)
	for _, tool := range []string{"qemu-system-x86_64", "clamd", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Missing(t, tool+" not installed")
		}
	}
	kernel := guesttest.Kernel(t)
	dir := t.TempDir()
	img, err := lab.MakeDataDisk(dir, map[string][]byte{"/etc/motd": []byte("welcome\n")}, 32, true)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "front.sock")
	br := labtest.Bridge(t, "sctav")
	domains := []tenant.Domain{{TID: 51, Name: "av", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "web", MAC: "02:00:00:00:51:01", IP: "10.51.0.1", Port: "avweb",
			AV: &tenant.AVPolicy{Paths: []string{"/x", "/etc/motd"}, Schedule: "500ms"}}}}}}}
	// How the disk is reached is the host inventory of the VM's port; the
	// agent opens the image and creates the socket beneath its root.
	roots, err := hostpath.OpenRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer roots.Close()
	inv := inventory.Index([]inventory.Port{{Name: "avweb", Tenant: "acme", Disk: &inventory.Disk{Image: img, Mode: "front", Socket: sock}}})
	var mu sync.Mutex
	var events []agent.Event
	policy := domains[0].Subnets[0].VMs[0].AV
	domains[0].Subnets[0].VMs[0].AV = nil
	_, a := enforceWith(t, br, domains, "sctav-", func(e agent.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }, roots, inv)
	a.DataDir = t.TempDir()
	domains[0].Subnets[0].VMs[0].AV = policy // HyperAV added to a running VM's policy
	if err := a.Apply(context.Background(), domains, inv); err != nil {
		t.Fatal(err)
	}
	find := func(kind string) (agent.Event, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.Kind == kind {
				return e, true
			}
		}
		return agent.Event{}, false
	}
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: "secaas-test-agav", Kernel: kernel, MemMiB: 256, Dir: t.TempDir(),
		Modules: []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"},
		Disks:   []lab.GuestDisk{{Node: "disk0", NBD: sock, Export: "disk"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	eicar := `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!" + `$H+H*`
	if out, err := g.Run("mkdir -p /mnt && mount -t ext4 /dev/vda1 /mnt && printf '%s' '"+eicar+"' > /mnt/x && sync && echo ok", time.Minute); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("guest: %v %s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	var e agent.Event
	for ok := false; !ok; e, ok = find(hyperav.EventInfected) {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("no av.infected; events %+v", events)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var r hyperav.ScanResult
	if err := json.Unmarshal([]byte(e.Detail), &r); err != nil || r.Path != "/x" || e.Tenant != "acme" || e.VM != "web" || r.Verdict != "INFECTED" {
		t.Fatalf("event %+v: %v", e, err)
	}
	st, err := a.AVStatus(51, "web")
	if err != nil || st.Chunks[hyperav.Infected] == 0 || st.Files["/x"].Verdict != "INFECTED" || st.Files["/etc/motd"].Verdict != "CLEAN" {
		t.Fatalf("status %+v %v", st, err)
	}
	// On demand: the untouched file is answered from cache.
	res, err := a.AVScan(context.Background(), 51, "web", "/etc/motd")
	if err != nil || !res.Cached || res.DataRead != 0 {
		t.Fatalf("on-demand scan: %+v %v", res, err)
	}
	if _, err := a.AVScan(context.Background(), 51, "web", "/nope"); err == nil {
		t.Fatal("a missing file scanned")
	}
	if _, err := a.AVScan(context.Background(), 51, "other", "/x"); err == nil {
		t.Fatal("a VM without AV scanned")
	}
	// The guest cannot read the infected file any more.
	out, _ := g.Run("echo 3 > /proc/sys/vm/drop_caches; od -An -c /mnt/x | head -1", 30*time.Second)
	if strings.Contains(out, "X   5   O") {
		t.Fatalf("not isolated: %q", out)
	}
	if rep, ok := find(hyperav.EventReport); !ok || len(rep.Data) == 0 {
		t.Fatal("no av.report with data")
	}
}
