package agent_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
	"secaas/internal/tenant"
	"secaas/internal/vmi"
)

// TestVMIMonitorOnLiveGuest: a VM whose policy asks for memory monitoring
// gets a monitor on its guest's RAM; each cycle's report reaches the
// control plane, a rootkit's hidden process raises one vmi.hidden_process
// event for the VM's tenant, and removing the policy stops the monitor.
func TestVMIMonitorOnLiveGuest(t *testing.T) {
	labtest.RequireOVS(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	ks, err := lab.FindKernels("../..")
	if err != nil || ks[0].Rootkit == "" {
		labtest.Missing(t, "no guest kernel or test rootkit: run scripts/guest-kernel.sh")
	}
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: "secaas-test-agvmi", Kernel: ks[0].Vmlinuz, MemMiB: 256,
		Dir: t.TempDir(), Files: map[string]string{"/secaas_dkom.ko": ks[0].Rootkit}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)

	ctx := context.Background()
	br := labtest.Bridge(t, "sctv")
	domains := []tenant.Domain{{TID: 41, Name: "vmi", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "db", MAC: "02:00:00:00:41:01", IP: "10.41.0.1", Port: "vmidb",
			VMI: &tenant.VMIPolicy{Interval: "500ms"}}}}}}}
	var mu sync.Mutex
	var events []agent.Event
	// The RAM file comes from the host inventory of the VM's port, opened
	// beneath the shm root.
	// So does the guest's own kernel image, beneath the image root.
	kernel, err := filepath.Abs(ks[0].Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := hostpath.OpenRoots(filepath.Dir(g.RAMFile), filepath.Dir(kernel))
	if err != nil {
		t.Fatal(err)
	}
	defer roots.Close()
	inv := inventory.Index([]inventory.Port{{Name: "vmidb", Tenant: "acme", Memory: g.RAMFile, Kernel: kernel}})
	_, a := enforceWith(t, br, domains, "sctv-", func(e agent.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }, roots, inv)
	count := func(kind string) (n int, last agent.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.Kind == kind {
				n, last = n+1, e
			}
		}
		return n, last
	}
	waitFor := func(kind string, n int) agent.Event {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			got, last := count(kind)
			if got >= n {
				return last
			}
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("no %s after a minute; events: %+v", kind, events)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	e := waitFor(vmi.EventReport, 2)
	var r vmi.Report
	if err := json.Unmarshal(e.Data, &r); err != nil || e.TID != 41 || e.VM != "db" || e.Tenant != "acme" || len(r.Processes) < 30 || len(r.HiddenProcesses) != 0 {
		t.Fatalf("report event %+v: %v, %d processes, hidden %+v", e, err, len(r.Processes), r.HiddenProcesses)
	}
	// The default policy checks integrity, with the comparison against
	// the kernel image from the inventory: a clean guest matches it.
	if r.Integrity == nil || r.Integrity.Checked["image_text"] < 500 || len(r.Integrity.Findings) != 0 {
		t.Fatalf("integrity %+v (partial %v)", r.Integrity, r.Partial)
	}
	out, err := g.Run("sleep 9191 </dev/null >/dev/null & echo $!", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	victim := strings.TrimSpace(out)
	if out, err := g.Run("insmod /secaas_dkom.ko pid="+victim, 30*time.Second); err != nil || out != "" {
		t.Fatalf("insmod: %v %s", err, out)
	}
	e = waitFor(vmi.EventHiddenProcess, 1)
	var c linuxkern.Candidate
	if err := json.Unmarshal([]byte(e.Detail), &c); err != nil || c.Comm != "sleep" || e.Subject != "vm/db" || e.Tenant != "acme" {
		t.Fatalf("alarm %+v: %v", e, err)
	}
	if pid, err := strconv.Atoi(victim); err != nil || c.PID != int32(pid) {
		t.Fatalf("alarm for pid %d, hid %q", c.PID, victim)
	}
	// Switching the policy off stops the monitor.
	domains[0].Subnets[0].VMs[0].VMI = nil
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	n, _ := count(vmi.EventReport)
	time.Sleep(1500 * time.Millisecond)
	if n2, _ := count(vmi.EventReport); n2 != n {
		t.Fatalf("%d reports after the policy was removed", n2-n)
	}
	if n, _ := count(vmi.EventHiddenProcess); n != 1 {
		t.Fatalf("%d hidden-process alarms, want 1 (once per object)", n)
	}
}
