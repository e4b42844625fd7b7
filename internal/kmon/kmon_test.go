package kmon

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/elfreloc"
	"secaas/internal/gdbstub"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// liveGuest boots a Debian guest (with files copied in) that keeps making
// syscalls, and gives its kernel (read from its RAM) and symbols.
func liveGuest(t *testing.T, name string, files map[string]string) (*lab.Guest, *linuxkern.Kernel, elfreloc.Symbols) {
	t.Helper()
	kernel := guesttest.Kernel(t)
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: name, Kernel: kernel, MemMiB: 256, Dir: t.TempDir(), Files: files})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	t.Logf("guest on %s", g.Accel)
	if _, err := g.Run("(while true; do cat /proc/version > /dev/null; done) &", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	k := guesttest.OpenKernel(t, g.RAMFile)
	return g, k, Symbols(k)
}

// attach connects to the guest's gdbstub (which stops the guest).
func attach(t *testing.T, ctx context.Context, sock string) *gdbstub.Client {
	t.Helper()
	c, err := gdbstub.Dial(ctx, "unix", sock, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// caught attaches and catches a vCPU on the syscall path.
func caught(t *testing.T, ctx context.Context, g *lab.Guest, syms elfreloc.Symbols) *Target {
	t.Helper()
	tg := &Target{GDB: attach(t, ctx, g.GDB), Syms: syms}
	if err := tg.Catch(ctx); err != nil {
		t.Fatal(err)
	}
	return tg
}

// compileObject builds a C source for the guest kernel.
func compileObject(t *testing.T, src string) []byte {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		labtest.Missing(t, "gcc not installed")
	}
	obj := filepath.Join(t.TempDir(), "out.o")
	if out, err := exec.Command("gcc", append(elfreloc.KernelCFlags, "-o", obj, src)...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v %s", err, out)
	}
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInjectAndCall boots a Debian guest, catches a vCPU on the syscall
// path through the gdbstub, injects an object relocated against the
// guest's own kallsyms into module memory made executable, and calls its
// functions: arithmetic, a call into the guest kernel (strlen of the
// kernel's banner), and writable data that keeps its state. The guest's
// module list is unchanged, the memory is freed, and the guest runs on.
func TestInjectAndCall(t *testing.T) {
	code := compileObject(t, "testdata/probe.c")
	ctx := context.Background()
	g, k, syms := liveGuest(t, "secaas-test-kmon", nil)
	modsBefore, err := g.Run("cat /proc/modules | wc -l", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tg := caught(t, cctx, g, syms)
	c := tg.GDB
	defer c.Close()
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

// shared reads the monitor's counters from guest memory through the
// gdbstub (the guest stops while it is attached).
type sharedView struct{ magic, calls, blocked, inFlight, countRead uint64 }

func readShared(t *testing.T, gdb string, at uint64) sharedView {
	t.Helper()
	c := attach(t, context.Background(), gdb)
	defer c.Detach()
	b, err := c.ReadMemory(at, offCount+8*maxSyscall)
	if err != nil {
		t.Fatal(err)
	}
	u := func(off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
	return sharedView{magic: u(0), calls: u(8), blocked: u(16), inFlight: u(24), countRead: u(offCount)}
}

// setBlock sets or clears the block bit of syscall nr.
func setBlock(t *testing.T, gdb string, at uint64, nr int, on bool) {
	t.Helper()
	c := attach(t, context.Background(), gdb)
	defer c.Detach()
	word := at + offBlock + uint64(nr/64)*8
	b, err := c.ReadMemory(word, 8)
	if err != nil {
		t.Fatal(err)
	}
	v := binary.LittleEndian.Uint64(b)
	if on {
		v |= 1 << (nr % 64)
	} else {
		v &^= 1 << (nr % 64)
	}
	binary.LittleEndian.PutUint64(b, v)
	if err := c.WriteMemory(word, b); err != nil {
		t.Fatal(err)
	}
}

// TestHookCountsAndBlocks: the monitor object (object/monitor.c),
// injected and hooked into the guest's x64_sys_call dispatch, counts the
// guest's syscalls; a blocked number fails with EPERM inside the guest
// while other syscalls work; after the hook is taken out the guest's
// syscalls behave as before and the monitor sees none.
func TestHookCountsAndBlocks(t *testing.T) {
	code := compileObject(t, "object/monitor.c")
	g, _, syms := liveGuest(t, "secaas-test-kmon-hook", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg := caught(t, ctx, g, syms)
	c := tg.GDB
	inj, err := tg.Inject(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	shared, monitor := inj.Image.Symbols["secaas_shared"], inj.Image.Symbols["secaas_dispatch"]
	if shared == 0 || monitor == 0 {
		t.Fatalf("symbols %v", inj.Image.Symbols)
	}
	h, err := tg.HookDispatch(monitor)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dispatch call at %#x now goes to %#x", h.Site, monitor)
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	if out, err := g.Run("cat /proc/version", 30*time.Second); err != nil || !strings.Contains(out, "Linux") {
		t.Fatalf("guest with the hook: %q %v", out, err)
	}
	s := readShared(t, g.GDB, shared)
	if s.magic != sharedMagic || s.calls == 0 || s.countRead == 0 {
		t.Fatalf("monitor state %+v", s)
	}
	// mkdir, and mkdirat (which a C library may use for it).
	blocked := []int{83, 258}
	for _, nr := range blocked {
		setBlock(t, g.GDB, shared, nr, true)
	}
	out, err := g.Run("mkdir /tmp/kmon-x; echo rc=$?", 30*time.Second)
	if err != nil || !strings.Contains(out, "rc=1") || !strings.Contains(out, "not permitted") {
		t.Fatalf("blocked mkdir: %q %v", out, err)
	}
	if out, err := g.Run("echo still > /tmp/kmon-y; cat /tmp/kmon-y", 30*time.Second); err != nil || !strings.Contains(out, "still") {
		t.Fatalf("other syscalls while mkdir is blocked: %q %v", out, err)
	}
	if s2 := readShared(t, g.GDB, shared); s2.blocked == 0 || s2.calls <= s.calls {
		t.Fatalf("after the block %+v (before %+v)", s2, s)
	}
	for _, nr := range blocked {
		setBlock(t, g.GDB, shared, nr, false)
	}
	c2 := attach(t, ctx, g.GDB)
	tg.GDB = c2
	if err := tg.Unhook(h); err != nil {
		t.Fatal(err)
	}
	c2.Detach()
	before := readShared(t, g.GDB, shared).calls
	if out, err := g.Run("mkdir /tmp/kmon-x; echo rc=$?", 30*time.Second); err != nil || !strings.Contains(out, "rc=0") {
		t.Fatalf("mkdir after the hook is out: %q %v", out, err)
	}
	if after := readShared(t, g.GDB, shared).calls; after != before {
		t.Fatalf("the monitor still sees syscalls: %d -> %d", before, after)
	}
}
