package gdbstub

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
)

func TestDecode(t *testing.T) {
	for in, want := range map[string]string{
		"OK":         "OK",
		"0* ":        "0000", // '*' then ' ' (32-29 = 3 more)
		"a}\x03b":    "a#b",  // escaped '#'
		"T05thread:": "T05thread:",
	} {
		got, err := decode([]byte(in))
		if err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"}", "*!", "a*\x10"} {
		if _, err := decode([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
	s := parseStop("T05thread:p01.02;watch:ffff8880001000;")
	if s.Signal != 5 || s.Thread != "p01.02" || s.Watch != 0xffff8880001000 || s.Exited {
		t.Fatalf("%+v", s)
	}
	if !parseStop("W00").Exited {
		t.Fatal("W is an exit")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("T05thread:p01.01;"))
	f.Add([]byte("0* }]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decode(b); err == nil && len(s) > maxPacket {
			t.Fatalf("decoded %d bytes", len(s))
		}
		parseStop(string(b))
	})
}

// TestLiveGuest drives QEMU's gdbstub of a running Debian guest: the
// registers and memory it shows match what the guest's RAM says (read
// from the host through kallsyms), a memory write reads back and is
// undone, a software breakpoint on x64_sys_call stops the guest when it
// makes a syscall, and after the detach the guest runs on.
func TestLiveGuest(t *testing.T) {
	kernel := guesttest.Kernel(t)
	ctx := context.Background()
	g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-test-gdb", Kernel: kernel, MemMiB: 256, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if out, err := g.Run("echo ready", 60*time.Second); err != nil || !strings.Contains(out, "ready") {
		t.Fatalf("guest: %q %v", out, err)
	}
	k := guesttest.OpenKernel(t, g.RAMFile)
	sym, ok := k.Syms.Lookup("x64_sys_call")
	if !ok {
		t.Fatal("no x64_sys_call in kallsyms")
	}

	c, err := Dial(ctx, "unix", g.GDB, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	threads, err := c.Threads()
	if err != nil || len(threads) == 0 {
		t.Fatalf("threads %v %v", threads, err)
	}
	regs, err := c.ReadRegisters()
	if err != nil {
		t.Fatal(err)
	}
	rip, ok1 := regs.Get("rip")
	cr3, ok2 := regs.Get("cr3")
	if !ok1 || !ok2 || rip == 0 || cr3 == 0 {
		t.Fatalf("rip %#x cr3 %#x", rip, cr3)
	}
	// Memory through the stub = memory through the host's RAM file.
	got, err := c.ReadMemory(sym.Addr, 4096+100)
	if err != nil {
		t.Fatal(err)
	}
	pa, err := k.PA(sym.Addr)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 64)
	if _, err := k.Mem.ReadAt(want, pa); err != nil {
		t.Fatal(err)
	}
	if len(got) != 4196 || !bytes.Equal(got[:64], want) {
		t.Fatalf("x64_sys_call through the stub %x, in RAM %x", got[:16], want[:16])
	}
	// A write (the guest is stopped) reads back, and is undone.
	orig := got[:8]
	patch := []byte{0xcc, 0xcc, 0xcc, 0xcc, 0x90, 0x90, 0x90, 0x90}
	if err := c.WriteMemory(sym.Addr, patch); err != nil {
		t.Fatal(err)
	}
	if back, _ := c.ReadMemory(sym.Addr, 8); !bytes.Equal(back, patch) {
		t.Fatalf("after the write: %x", back)
	}
	if err := c.WriteMemory(sym.Addr, orig); err != nil {
		t.Fatal(err)
	}
	if back, _ := c.ReadMemory(sym.Addr, 8); !bytes.Equal(back, orig) {
		t.Fatalf("after the undo: %x", back)
	}
	// A register write reads back; restore the original set.
	saved := regs.Clone()
	if err := regs.Set("rax", 0x5ec0a5); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRegisters(regs); err != nil {
		t.Fatal(err)
	}
	if r2, _ := c.ReadRegisters(); func() uint64 { v, _ := r2.Get("rax"); return v }() != 0x5ec0a5 {
		t.Fatal("rax did not take the write")
	}
	if err := c.WriteRegisters(saved); err != nil {
		t.Fatal(err)
	}
	// A breakpoint on the syscall dispatch: the guest's next syscall stops
	// it there.
	if err := c.SetPoint(Software, sym.Addr, 1); err != nil {
		t.Fatal(err)
	}
	ran := make(chan string, 1)
	go func() {
		out, _ := g.Run("echo after-break", 60*time.Second)
		ran <- out
	}()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	stop, err := c.Continue(cctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if stop.Signal != 5 {
		t.Fatalf("stopped by %+v, not the breakpoint", stop)
	}
	if stop.Thread != "" {
		if err := c.SelectThread(stop.Thread); err != nil {
			t.Fatal(err)
		}
	}
	at, _ := c.ReadRegisters()
	if v, _ := at.Get("rip"); v != sym.Addr {
		t.Fatalf("stopped at %#x, the breakpoint is at %#x", v, sym.Addr)
	}
	if err := c.ClearPoint(Software, sym.Addr, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Detach(); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-ran:
		if !strings.Contains(out, "after-break") {
			t.Fatalf("the guest after the detach: %q", out)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the guest did not run on after the detach")
	}
	if out, err := g.Run("echo alive", 30*time.Second); err != nil || !strings.Contains(out, "alive") {
		t.Fatalf("guest after: %q %v", out, err)
	}
}
