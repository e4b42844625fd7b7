package linuxkern_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// TestVMCoreInfoFromLiveGuest finds VMCOREINFO in a running Debian guest's
// RAM and checks it against the guest itself: the release matches uname,
// KASLR is on, and the symbol it gives for init_uts_ns, translated with the
// recovered phys_base, holds the guest's own uname strings.
func TestVMCoreInfoFromLiveGuest(t *testing.T) {
	g := bootGuest(t, "secaas-test-kern")
	release, err := g.Run("uname -r", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := openRAM(t, g)
	t0 := time.Now()
	vi, err := linuxkern.FindVMCoreInfo(m, m.Size())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("VMCOREINFO at %#x in %s: %s, KASLR offset %#x, phys_base %#x, %d symbols", vi.Addr, time.Since(t0), vi.OSRelease, vi.KernelOffset, vi.PhysBase, len(vi.Symbols))
	if vi.OSRelease != strings.TrimSpace(release) {
		t.Fatalf("OSRELEASE %q, uname -r %q", vi.OSRelease, release)
	}
	if vi.KernelOffset == 0 {
		t.Fatal("KERNELOFFSET is 0: KASLR off?")
	}
	uts, ok := vi.Symbols["init_uts_ns"]
	if !ok {
		t.Fatal("no init_uts_ns symbol")
	}
	pa, err := vi.KernelPA(uts)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := m.ReadAt(buf, pa); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf, []byte("Linux\x00")) || !bytes.Contains(buf, []byte(vi.OSRelease)) {
		t.Fatalf("init_uts_ns at pa %#x does not hold the uname strings: %q", pa, buf[:200])
	}
}

func TestKallsymsFromLiveGuest(t *testing.T) {
	g := bootGuest(t, "secaas-test-ksyms")
	// The guest's own view, for comparison (root can read real addresses).
	procLine, err := g.Run("grep -w init_task /proc/kallsyms", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := openRAM(t, g)
	vi, err := linuxkern.FindVMCoreInfo(m, m.Size())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	k, err := linuxkern.ReadKallsyms(m, vi)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d symbols decoded in %s", len(k.Syms), time.Since(t0))
	if len(k.Syms) < 50000 {
		t.Fatalf("only %d symbols", len(k.Syms))
	}
	it, ok := k.Lookup("init_task")
	if !ok {
		t.Fatal("no init_task")
	}
	if !strings.HasPrefix(strings.TrimSpace(procLine), fmt.Sprintf("%016x", it.Addr)) {
		t.Fatalf("init_task at %#x; the guest's /proc/kallsyms says %q", it.Addr, procLine)
	}
	for _, name := range []string{"do_syscall_64", "module_alloc", "set_memory_x"} {
		if _, ok := k.Lookup(name); !ok {
			t.Errorf("no %s", name)
		}
	}
}

// TestProcessListFromLiveGuest: processes started in the guest (pids from
// its console) appear in the task list walked from the host, with their
// names, using only what the guest's own memory says (no symbol file).
func TestProcessListFromLiveGuest(t *testing.T) {
	g := bootGuest(t, "secaas-test-ps")
	pids := map[string]string{}
	for _, cmd := range []string{"sleep 1001", "sleep 1002", "cat"} {
		out, err := g.Run(cmd+" </dev/zero >/dev/null & echo $!", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		pids[strings.TrimSpace(out)] = strings.Fields(cmd)[0]
	}
	m := openRAM(t, g)
	t0 := time.Now()
	k, err := linuxkern.Open(m, m.Size())
	if err != nil {
		t.Fatal(err)
	}
	ps, err := k.ListProcesses()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel recovered and %d tasks listed in %s; task_struct layout %+v", len(ps), time.Since(t0), k.Task)
	found := map[string]string{}
	for _, p := range ps {
		found[fmt.Sprint(p.PID)] = p.Comm
	}
	// Details: uid, start time and the executable's path, across a mount.
	// A copy of busybox named sleep on a tmpfs, run as uid 1234.
	out, err := g.Run("mkdir -p /mnt /etc && mount -t tmpfs t /mnt && cp /bin/busybox /mnt/sleep && echo u:x:1234:1234::/:/bin/sh >>/etc/passwd && echo ok", 30*time.Second)
	if err != nil || out != "ok" {
		t.Fatalf("%v: %s", err, out)
	}
	out, err = g.Run("su u -c 'exec /mnt/sleep 1003' </dev/null >/dev/null & echo $!", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.TrimSpace(out)
	// Wait until the background job has exec'd sleep.
	for i := 0; i < 50; i++ {
		if ps, err = k.ListProcesses(); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(ps, func(p linuxkern.Process) bool { return fmt.Sprint(p.PID) == other && p.Comm == "sleep" }) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var sawOther bool
	for i := range ps {
		p := &ps[i]
		k.Details(p)
		switch {
		case fmt.Sprint(p.PID) == other:
			sawOther = true
			if p.Exe != "/mnt/sleep" || p.UID != 1234 || p.Comm != "sleep" {
				t.Errorf("pid %s: %+v, want /mnt/sleep as uid 1234", other, p)
			}
		case pids[fmt.Sprint(p.PID)] != "":
			if p.Exe != "/bin/busybox" || p.UID != 0 || p.Start == 0 {
				t.Errorf("pid %d: %+v, want /bin/busybox as uid 0", p.PID, p)
			}
		case p.Kernel && p.Exe != "":
			t.Errorf("kernel thread with an exe: %+v", p)
		}
	}
	if !sawOther {
		t.Errorf("pid %q not listed", other)
	}
	for pid, comm := range pids {
		if found[pid] != comm {
			t.Errorf("pid %s (%s) listed as %q", pid, comm, found[pid])
		}
	}
	if found["1"] != "init" && found["1"] != "sh" {
		t.Errorf("pid 1 is %q", found["1"])
	}
	// The guest's own count of processes (not threads) should match ours.
	out, err = g.Run("ls -d /proc/[0-9]* | wc -l", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(out), &n); err != nil {
		t.Fatalf("count %q: %v", out, err)
	}
	if n == 0 || len(ps) < n-3 || len(ps) > n+3 {
		t.Errorf("walked %d tasks, the guest's /proc shows %d", len(ps), n)
	}
}

// TestScanFindsListedTasksAndNoFalseHidden: the fingerprint scan over all
// of RAM finds the tasks the list has, and on a guest where many processes
// have come and gone (stale task_structs in freed slab memory) and no
// rootkit runs, it reports no hidden process.
func TestScanFindsListedTasksAndNoFalseHidden(t *testing.T) {
	g := bootGuest(t, "secaas-test-scan")
	// 100 short-lived processes leave freed task_structs behind.
	if _, err := g.Run("for i in $(seq 1 100); do /bin/true; done", 120*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run("sleep 1001 </dev/null >/dev/null &", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	m := openRAM(t, g)
	k, err := linuxkern.Open(m, m.Size())
	if err != nil {
		t.Fatal(err)
	}
	ps, err := k.ListProcesses()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cands, st, err := k.ScanTasks(m.Size(), ps)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(t0)
	count := map[string]int{}
	for _, c := range cands {
		count[c.Status]++
		if c.Status == "hidden" {
			t.Errorf("false hidden process: %+v", c)
		}
	}
	t.Logf("scanned %d MiB in %s (%.2f s/GiB): %d candidates %v; list has %d", st.Bytes>>20, el, el.Seconds()/(float64(st.Bytes)/(1<<30)), st.Candidates, count, len(ps))
	missed := len(ps) - count["listed"]
	if missed > len(ps)/20 {
		t.Errorf("the scan missed %d of %d listed tasks", missed, len(ps))
	}
}

// bootGuest boots a 256 MiB test guest (Debian's generic kernel, busybox)
// that stops when the test ends.
func bootGuest(t *testing.T, name string) *lab.Guest {
	t.Helper()
	return bootKernel(t, name, kernels(t)[0], lab.GuestConfig{})
}

// kernels returns every cached Debian kernel flavour (generic first), or
// only the kernel $SECAAS_GUEST_KERNEL names (as guesttest.Kernel).
func kernels(t *testing.T) []lab.GuestKernel {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	if k := os.Getenv("SECAAS_GUEST_KERNEL"); k != "" {
		return []lab.GuestKernel{lab.KernelAt(k)}
	}
	ks, err := lab.FindKernels("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	return ks
}

// bootKernel boots a 256 MiB test guest of the given kernel; cfg adds
// files and a CPU model.
func bootKernel(t *testing.T, name string, k lab.GuestKernel, cfg lab.GuestConfig) *lab.Guest {
	t.Helper()
	cfg.Name, cfg.Kernel = name, k.Vmlinuz
	return guesttest.Start(t, cfg)
}

// openRAM maps the guest's RAM for the rest of the test.
func openRAM(t *testing.T, g *lab.Guest) *guestmem.Mem {
	t.Helper()
	m, err := guestmem.OpenShared(g.RAMFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
