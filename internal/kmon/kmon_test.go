package kmon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/elfreloc"
	"secaas/internal/gdbstub"
	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// TestInjectAndCall boots a Debian guest, catches a vCPU on the syscall
// path through the gdbstub, injects an object relocated against the
// guest's own kallsyms into module memory made executable, and calls its
// functions: arithmetic, a call into the guest kernel (strlen of the
// kernel's banner), and writable data that keeps its state. The guest's
// module list is unchanged, the memory is freed, and the guest runs on.
func TestInjectAndCall(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		labtest.Missing(t, "gcc not installed")
	}
	kernel, err := lab.FindKernel("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	obj := filepath.Join(t.TempDir(), "probe.o")
	flags := []string{"-c", "-O2", "-mcmodel=kernel", "-fno-pic", "-fno-pie", "-mno-red-zone", "-ffreestanding", "-fno-stack-protector",
		"-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fno-merge-constants", "-fno-common", "-fcf-protection=none", "-nostdinc"}
	if out, err := exec.Command("gcc", append(flags, "-o", obj, "testdata/probe.c")...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v %s", err, out)
	}
	code, _ := os.ReadFile(obj)
	ctx := context.Background()
	g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-test-kmon", Kernel: kernel, MemMiB: 256, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	modsBefore, err := g.Run("cat /proc/modules | wc -l", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the guest making syscalls.
	if _, err := g.Run("(while true; do cat /proc/version > /dev/null; done) &", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mem, err := guestmem.OpenShared(g.RAMFile)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	k, err := linuxkern.Open(mem, mem.Size())
	if err != nil {
		t.Fatal(err)
	}
	syms := elfreloc.Symbols{}
	for _, s := range k.Syms.Syms {
		if _, seen := syms[s.Name]; !seen {
			syms[s.Name] = s.Addr
		}
	}
	c, err := gdbstub.Dial(ctx, "unix", g.GDB, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tg := &Target{GDB: c, Syms: syms}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := tg.Catch(cctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	inj, err := tg.Inject(cctx, code)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("injected %d bytes at %#x in %s", inj.Image.Size, inj.Image.Base, time.Since(t0))
	if inj.Image.Base < 0xffffffffa0000000 {
		t.Fatalf("module_alloc gave %#x, not module space", inj.Image.Base)
	}
	call := func(name string, args ...uint64) uint64 {
		t.Helper()
		fn, ok := inj.Image.Symbols[name]
		if !ok {
			t.Fatalf("no %s in the object", name)
		}
		r, err := tg.Call(cctx, fn, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	if r := call("secaas_add3", 40, ^uint64(0)); r != 42 {
		t.Fatalf("secaas_add3(40, -1) = %d", int64(r))
	}
	banner, ok := k.Syms.Lookup("linux_banner")
	if !ok {
		t.Fatal("no linux_banner")
	}
	text, err := c.ReadMemory(banner.Addr, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.IndexByte(string(text), 0)
	if r := call("secaas_len", banner.Addr); want <= 0 || r != uint64(want+1000) {
		t.Fatalf("secaas_len(linux_banner) = %d, the banner has %d bytes", r, want)
	}
	if a, b := call("secaas_count"), call("secaas_count"); a != 1 || b != 2 {
		t.Fatalf("counter %d, %d", a, b)
	}
	if err := tg.Remove(cctx, inj); err != nil {
		t.Fatal(err)
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	modsAfter, err := g.Run("cat /proc/modules | wc -l", 60*time.Second)
	if err != nil || modsAfter != modsBefore {
		t.Fatalf("modules before %q, after %q (%v)", modsBefore, modsAfter, err)
	}
	if out, err := g.Run("echo alive", 30*time.Second); err != nil || !strings.Contains(out, "alive") {
		t.Fatalf("guest after: %q %v", out, err)
	}
}
