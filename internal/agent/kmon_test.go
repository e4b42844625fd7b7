package agent_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/kmon"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

// TestKMonOnLiveGuest: a VM whose policy asks for syscall monitoring gets
// the monitor injected into its running kernel through its gdbstub (the
// host inventory's socket, opened beneath the run root). The paper's
// policy (cat, /etc/hosts, record) makes `cat /etc/hosts` a kmon.record
// event for the VM's tenant with cat's pid and the path; the same rule
// turned to block (a write into the guest, no re-injection) makes cat
// fail with EPERM while head still reads the file; the guest's module
// list never shows the monitor; removing the policy restores the
// dispatch and frees the monitor, and the guest's syscalls behave as
// before. Two tamperers in the guest (a module that puts the original
// call back, one that moves the syscall entry MSR) are found and undone
// by the agent. A port without a gdbstub socket only waits.
func TestKMonOnLiveGuest(t *testing.T) {
	labtest.RequireOVS(t)
	kernel := guesttest.Kernel(t)
	ks, err := lab.FindKernels("../..")
	if err != nil || ks[0].Tamper == "" {
		labtest.Missing(t, "no test tamper module: run scripts/guest-kernel.sh")
	}
	obj := filepath.Join(t.TempDir(), "kmon-monitor.o")
	if err := kmon.Build(context.Background(), obj); err != nil {
		labtest.Missing(t, "cannot build the monitor object: "+err.Error())
	}
	// pti=off: the tamperer's LSTAR stub must be mapped at the entry.
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: "secaas-test-agkmon", Kernel: kernel, MemMiB: 256, Dir: t.TempDir(),
		Files: map[string]string{"/secaas_tamper.ko": ks[0].Tamper}, Append: "pti=off"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	// A guest that makes syscalls now and then (a vCPU is caught on the
	// syscall path to inject), and a file to watch.
	if _, err := g.Run("(while sleep 0.3; do :; done) & mkdir -p /etc; echo '127.0.0.1 localhost secaas' > /etc/hosts", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	modsBefore, err := g.Run("cat /proc/modules", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := hostpath.OpenRoots(filepath.Dir(g.RAMFile), filepath.Dir(g.GDB))
	if err != nil {
		t.Fatal(err)
	}
	defer roots.Close()

	ctx := context.Background()
	br := labtest.Bridge(t, "sctk")
	rule := tenant.KMonRule{Syscalls: []int{2, 257}, Subject: "cat", Object: "/etc/hosts", Action: "record"}
	vm := tenant.VM{Name: "db", MAC: "02:00:00:00:42:01", IP: "10.42.0.1", Port: "kmondb", KMon: &tenant.KMonPolicy{Rules: []tenant.KMonRule{rule}}}
	domains := []tenant.Domain{{TID: 42, Name: "kmon", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{vm}}}}}
	var mu sync.Mutex
	var events []agent.Event
	a := agent.New(br, quiet(), func(e agent.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	a.Host, a.KMonObject = roots, obj
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	from := 0 // events before this one are an earlier phase's
	waitFor := func(kind string, match func(agent.Event) bool) agent.Event {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
			mu.Lock()
			for _, e := range events[from:] {
				if e.Kind == kind && (match == nil || match(e)) {
					mu.Unlock()
					return e
				}
				if e.Kind == "kmon.failed" {
					mu.Unlock()
					t.Fatalf("kmon failed: %+v", e)
				}
			}
			if time.Now().After(deadline) {
				defer mu.Unlock()
				t.Fatalf("no %s; events: %+v", kind, events)
			}
			mu.Unlock()
		}
	}

	// Without a gdbstub socket in the inventory: it waits.
	if err := a.Apply(ctx, domains, inventory.Index([]inventory.Port{{Name: "kmondb", Tenant: "acme", Memory: g.RAMFile}})); err != nil {
		t.Fatal(err)
	}
	waitFor("kmon.waiting", nil)
	// A gdbstub socket that is not there: the injection fails, is said
	// once, and is tried again later.
	if err := a.Apply(ctx, domains, inventory.Index([]inventory.Port{{Name: "kmondb", Tenant: "acme", Memory: g.RAMFile, GDB: g.GDB + ".gone"}})); err != nil {
		t.Fatal(err)
	}
	waitFor("kmon.failed", func(e agent.Event) bool {
		return strings.Contains(e.Detail, "gdbstub socket of port kmondb: no such file") && !strings.Contains(e.Detail, "gdb.sock")
	})
	mu.Lock()
	from = len(events)
	mu.Unlock()
	inv := inventory.Index([]inventory.Port{{Name: "kmondb", Tenant: "acme", Memory: g.RAMFile, GDB: g.GDB}})
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	e := waitFor("kmon.started", nil)
	t.Logf("%s", e.Detail)
	// Memory monitoring of the same VM sees the redirected dispatch as
	// secaas's own hook (a notice owned by "secaas kmon"), not a rootkit's.
	domains[0].Subnets[0].VMs[0].VMI = &tenant.VMIPolicy{Interval: "500ms", Indicators: []string{"integrity"}}
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	e = waitFor("vmi.kernel_hook", nil)
	if !strings.Contains(e.Detail, `"owner":"secaas kmon"`) || !strings.Contains(e.Detail, `"severity":"notice"`) {
		t.Fatalf("the monitor's hook seen as %s", e.Detail)
	}
	mu.Lock()
	before := from
	from = len(events)
	mu.Unlock()
	waitFor("vmi.report", nil) // a full cycle more
	mu.Lock()
	from = before
	for _, e := range events {
		if e.Kind == "vmi.kernel_hook" && strings.Contains(e.Detail, `"severity":"alert"`) {
			t.Errorf("an alert for secaas's own monitor: %s", e.Detail)
		}
	}
	mu.Unlock()
	if out, err := g.Run("cat /etc/hosts", 30*time.Second); err != nil || !strings.Contains(out, "secaas") {
		t.Fatalf("cat with a record rule: %q %v", out, err)
	}
	e = waitFor("kmon.record", nil)
	if e.Tenant != "acme" || e.Subject != "vm/db" || e.TID != 42 || !strings.Contains(e.Detail, "comm cat ") || !strings.Contains(e.Detail, "path /etc/hosts") {
		t.Fatalf("record event %+v", e)
	}
	// The same rule, now block: handed to the running monitor.
	domains[0].Subnets[0].VMs[0].KMon = &tenant.KMonPolicy{Rules: []tenant.KMonRule{{Syscalls: rule.Syscalls, Subject: "cat", Object: "/etc/hosts", Action: "block"}}}
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	waitFor("kmon.rules", nil)
	out, err := g.Run("cat /etc/hosts; echo rc=$?", 30*time.Second)
	if err != nil || !strings.Contains(out, "not permitted") || !strings.Contains(out, "rc=1") {
		t.Fatalf("cat with a block rule: %q %v", out, err)
	}
	if out, err := g.Run("head -1 /etc/hosts", 30*time.Second); err != nil || !strings.Contains(out, "secaas") {
		t.Fatalf("head while cat is blocked: %q %v", out, err)
	}
	waitFor("kmon.block", func(e agent.Event) bool { return strings.Contains(e.Detail, "comm cat ") })
	if mods, err := g.Run("cat /proc/modules", 30*time.Second); err != nil || mods != modsBefore {
		t.Fatalf("the guest's module list changed: %q, before %q (%v)", mods, modsBefore, err)
	}
	// A rootkit in the guest puts the original call back (the monitor
	// bypassed): the agent finds it and hooks again; cat stays blocked.
	var site uint64
	started := waitFor("kmon.started", nil)
	if _, err := fmt.Sscanf(started.Detail[strings.Index(started.Detail, "hooked at ")+len("hooked at "):], "%v", &site); err != nil || site == 0 {
		t.Fatalf("no hook site in %q: %v", started.Detail, err)
	}
	x64 := kmon.Symbols(guesttest.OpenKernel(t, g.RAMFile))["x64_sys_call"]
	if out, err := g.Run(fmt.Sprintf("insmod /secaas_tamper.ko site=%#x target=%#x && echo loaded", site, x64), 30*time.Second); err != nil || !strings.Contains(out, "loaded") {
		t.Fatalf("insmod secaas_tamper: %q %v", out, err)
	}
	e = waitFor("kmon.tampered", nil)
	if !strings.Contains(e.Detail, "dispatch") || !strings.Contains(e.Detail, "; repaired") {
		t.Fatalf("tamper event %+v", e)
	}
	t.Logf("%s", e.Detail)
	if out, err := g.Run("cat /etc/hosts; echo rc=$?", 30*time.Second); err != nil || !strings.Contains(out, "not permitted") {
		t.Fatalf("cat after the tamperer: %q %v", out, err)
	}
	// Another moves the syscall entry (LSTAR) to a stub of its own: the
	// monitor reads the MSR now and then, the agent puts it back on every
	// CPU through the guest kernel.
	if out, err := g.Run("rmmod secaas_tamper; insmod /secaas_tamper.ko lstar=1 && echo loaded; dd if=/dev/zero of=/dev/null bs=1 count=4000 2>/dev/null", 60*time.Second); err != nil || !strings.Contains(out, "loaded") {
		t.Fatalf("insmod secaas_tamper lstar=1: %q %v", out, err)
	}
	e = waitFor("kmon.tampered", func(e agent.Event) bool { return strings.Contains(e.Detail, "lstar") })
	if !strings.Contains(e.Detail, "; repaired") {
		t.Fatalf("LSTAR tamper event %+v", e)
	}
	t.Logf("%s", e.Detail)
	if out, err := g.Run("cat /etc/hosts; echo rc=$?; head -1 /etc/hosts", 30*time.Second); err != nil || !strings.Contains(out, "not permitted") || !strings.Contains(out, "secaas") {
		t.Fatalf("the guest after the LSTAR repair: %q %v", out, err)
	}
	// Off: the dispatch is restored and the monitor freed.
	domains[0].Subnets[0].VMs[0].KMon = nil
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	e = waitFor("kmon.stopped", nil)
	t.Logf("%s", e.Detail)
	if out, err := g.Run("cat /etc/hosts; ls /etc > /dev/null; echo rc=$?", 30*time.Second); err != nil || !strings.Contains(out, "secaas") || !strings.Contains(out, "rc=0") {
		t.Fatalf("cat after the monitor left: %q %v", out, err)
	}
}
