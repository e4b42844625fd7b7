package kmon

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"secaas/internal/gdbstub"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
)

func TestEncodePolicies(t *testing.T) {
	table, watch, err := EncodePolicies([]Policy{{Syscalls: []int{0, 257}, Subject: "vim", Object: "/etc/hosts", Action: "record"},
		{Syscalls: []int{2}, Subject: "cat", Action: "block"}})
	if err != nil {
		t.Fatal(err)
	}
	if watch[0] != 0b101 || watch[257/8] != 1<<(257%8) || table[0] != 1 || table[257/8] != 1<<(257%8) {
		t.Fatalf("sets: watch %x table %x", watch[:40], table[:40])
	}
	if cstr(table[64:80]) != "vim" || cstr(table[80:208]) != "/etc/hosts" || binary.LittleEndian.Uint32(table[208:]) != actionRecord ||
		binary.LittleEndian.Uint32(table[policySize+208:]) != actionBlock || table[policySize] != 0b100 {
		t.Fatalf("table %x", table[:policySize*2])
	}
	for _, bad := range [][]Policy{
		{{Syscalls: []int{1}, Subject: "x", Action: "allow"}},
		{{Syscalls: []int{512}, Subject: "x", Action: "record"}},
		{{Syscalls: nil, Subject: "x", Action: "record"}},
		{{Syscalls: []int{1}, Subject: "a-name-longer-than-15", Action: "record"}},
		make([]Policy, 9),
	} {
		if _, _, err := EncodePolicies(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestDecodeEvents(t *testing.T) {
	area := make([]byte, sharedSize)
	binary.LittleEndian.PutUint64(area, sharedMagic)
	put := func(n uint64, pid int, comm, path string, verdict uint32) {
		b := area[offEvents+int(n%ringEvents)*eventSize:]
		binary.LittleEndian.PutUint64(b, n+1)
		binary.LittleEndian.PutUint32(b[16:], uint32(pid))
		binary.LittleEndian.PutUint32(b[24:], 257)
		binary.LittleEndian.PutUint32(b[28:], verdict)
		copy(b[32:48], comm)
		copy(b[48:], path)
	}
	for n := uint64(0); n < 3; n++ {
		put(n, 100+int(n), "cat", "/etc/hosts", actionRecord)
	}
	binary.LittleEndian.PutUint64(area[offEvHead:], 4) // the 4th is being written
	evs, next, lost, err := DecodeEvents(area, 1)
	if err != nil || len(evs) != 2 || next != 3 || lost != 0 || evs[0].PID != 101 || evs[1].Comm != "cat" || evs[1].Path != "/etc/hosts" || evs[1].Verdict != "record" {
		t.Fatalf("%+v next %d lost %d %v", evs, next, lost, err)
	}
	// The ring overran: what was overwritten is counted as lost.
	for n := uint64(3); n < 3+ringEvents+5; n++ {
		put(n, int(n), "cat", "/x", actionBlock)
	}
	binary.LittleEndian.PutUint64(area[offEvHead:], 3+ringEvents+5)
	evs, next, lost, err = DecodeEvents(area, 3)
	if err != nil || len(evs) != ringEvents || lost != 5 || next != 3+ringEvents+5 || evs[0].Verdict != "block" {
		t.Fatalf("overrun: %d events, next %d, lost %d, %v", len(evs), next, lost, err)
	}
	if _, _, _, err := DecodeEvents(area[:100], 0); err == nil {
		t.Fatal("a short area decoded")
	}
	if _, _, _, err := DecodeEvents(area, 1<<40); err == nil {
		t.Fatal("a count that went back decoded")
	}
}

// FuzzDecodeEvents: guest memory is hostile; decoding never panics.
func FuzzDecodeEvents(f *testing.F) {
	area := make([]byte, sharedSize)
	binary.LittleEndian.PutUint64(area, sharedMagic)
	f.Add(area, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, after uint64) {
		if len(b) > 2*sharedSize {
			return
		}
		evs, _, _, err := DecodeEvents(b, after)
		if err == nil && len(evs) > ringEvents {
			t.Fatalf("%d events from a ring of %d", len(evs), ringEvents)
		}
	})
}

// TestPolicyRecordAndBlock: the paper's policy p = (VM, {open, openat},
// (cat, /etc/hosts), record) makes `cat /etc/hosts` in a live guest an
// event with cat's pid, uid and the path, read from the guest's RAM on
// the host without stopping it; with block, the open fails with EPERM
// inside the guest while another process (head) still reads the file.
func TestPolicyRecordAndBlock(t *testing.T) {
	code := compileObject(t, "object/monitor.c")
	g, k, syms := liveGuest(t, "secaas-test-kmon-policy", nil)
	if _, err := g.Run("mkdir -p /etc; echo '127.0.0.1 localhost secaas' > /etc/hosts", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	lay, err := Layout(k)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tg := caught(t, ctx, g, syms)
	c := tg.GDB
	m, err := tg.Install(ctx, code, lay)
	if err != nil {
		t.Fatal(err)
	}
	pol := Policy{Syscalls: []int{2, 257}, Subject: "cat", Object: "/etc/hosts", Action: "record"}
	if err := m.SetPolicies(c, []Policy{pol}); err != nil {
		t.Fatal(err)
	}
	c.Detach()
	events := func(after uint64) ([]Event, uint64) {
		t.Helper()
		area, err := ReadVA(k, m.Shared, sharedSize)
		if err != nil {
			t.Fatal(err)
		}
		evs, next, _, err := DecodeEvents(area, after)
		if err != nil {
			t.Fatal(err)
		}
		return evs, next
	}
	if out, err := g.Run("cat /etc/hosts; cat /proc/version > /dev/null", 30*time.Second); err != nil || !strings.Contains(out, "secaas") {
		t.Fatalf("cat with a record policy: %q %v", out, err)
	}
	evs, next := events(0)
	if len(evs) != 1 || evs[0].Comm != "cat" || evs[0].Path != "/etc/hosts" || evs[0].Verdict != "record" || evs[0].PID <= 1 || evs[0].UID != 0 ||
		(evs[0].Syscall != 2 && evs[0].Syscall != 257) {
		t.Fatalf("events after cat: %+v", evs)
	}
	// Block: cat fails inside the guest, head still reads.
	c = attach(t, ctx, g.GDB)
	pol.Action = "block"
	if err := m.SetPolicies(c, []Policy{pol}); err != nil {
		t.Fatal(err)
	}
	c.Detach()
	out, err := g.Run("cat /etc/hosts; echo rc=$?", 30*time.Second)
	if err != nil || !strings.Contains(out, "not permitted") || !strings.Contains(out, "rc=1") {
		t.Fatalf("cat with a block policy: %q %v", out, err)
	}
	if out, err := g.Run("head -1 /etc/hosts", 30*time.Second); err != nil || !strings.Contains(out, "secaas") {
		t.Fatalf("head while cat is blocked: %q %v", out, err)
	}
	evs, _ = events(next)
	if len(evs) != 1 || evs[0].Verdict != "block" || evs[0].Comm != "cat" {
		t.Fatalf("events after the blocked cat: %+v", evs)
	}
	// Out again: the guest behaves as before.
	c = attach(t, ctx, g.GDB)
	tg.GDB = c
	if err := tg.Unhook(m.Hook); err != nil {
		t.Fatal(err)
	}
	c.Detach()
	if out, err := g.Run("cat /etc/hosts", 30*time.Second); err != nil || !strings.Contains(out, "secaas") {
		t.Fatalf("cat after the unhook: %q %v", out, err)
	}
}

// TestCheckRepairsTampering: a session blocks `cat /etc/hosts`; a module
// in the guest zeroes the host's part of the monitor's shared area (the
// monitor is disarmed: cat reads the file); one Check finds it from the
// guest's RAM and writes it back, and cat is blocked again.
func TestCheckRepairsTampering(t *testing.T) {
	code := compileObject(t, "object/monitor.c")
	ks, err := lab.FindKernels("../..")
	if err != nil || ks[0].Tamper == "" {
		labtest.Missing(t, "no test tamper module: run scripts/guest-kernel.sh")
	}
	g, k, _ := liveGuest(t, "secaas-test-kmon-tamper", map[string]string{"/secaas_tamper.ko": ks[0].Tamper})
	if _, err := g.Run("mkdir -p /etc; echo '127.0.0.1 localhost secaas' > /etc/hosts", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dial := func(ctx context.Context) (*gdbstub.Client, error) {
		return gdbstub.Dial(ctx, "unix", g.GDB, 10*time.Second)
	}
	s, err := Start(ctx, k, dial, code, []Policy{{Syscalls: []int{2, 257}, Subject: "cat", Object: "/etc/hosts", Action: "block"}})
	if err != nil {
		t.Fatal(err)
	}
	blocked := func() bool {
		t.Helper()
		out, err := g.Run("cat /etc/hosts", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(out, "not permitted")
	}
	if !blocked() {
		t.Fatal("cat not blocked")
	}
	if found, err := s.Check(ctx); err != nil || len(found) != 0 {
		t.Fatalf("check of an untouched monitor: %v %v", found, err)
	}
	area := s.mon.Shared + offLayout
	if out, err := g.Run(fmt.Sprintf("insmod /secaas_tamper.ko zero=%#x zero_len=%d && echo loaded", area, offEvHead-offLayout), 30*time.Second); err != nil || !strings.Contains(out, "loaded") {
		t.Fatalf("insmod: %q %v", out, err)
	}
	if blocked() {
		t.Fatal("the zeroed monitor still blocks: the tamperer missed")
	}
	found, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var data int
	for _, f := range found {
		if f.What != "data" || f.Err != nil {
			t.Fatalf("found %v", found)
		}
		data++
	}
	if data < 2 { // the task layout and the policies at least
		t.Fatalf("found %v", found)
	}
	t.Logf("%v", found)
	if !blocked() {
		t.Fatal("cat not blocked after the repair")
	}
	if err := s.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if blocked() {
		t.Fatal("cat blocked after the monitor left")
	}
}
