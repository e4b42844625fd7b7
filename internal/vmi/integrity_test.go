package vmi_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
	"secaas/internal/vmi"
)

// TestIntegrityLiveGuest watches a running guest with every indicator while
// it starts processes and opens and closes connections non-stop: no
// integrity finding, hidden socket, process or module may be reported. Then
// a test rootkit points a sys_call_table entry at itself, patches a jump
// over a syscall entry point, hooks tcp4_seq_show through ftrace so that
// /proc/net/tcp in the guest no longer shows a listener, puts a kprobe on
// a syscall entry point, sends the syscall dispatch (do_syscall_64's call
// of x64_sys_call) through itself, and hides itself
// from lsmod: each is reported once, with the hooked place and the owning
// module, and the listener as a socket the hook can hide. Compared with
// the guest's own kernel image, the clean kernel's code and syscall table
// match it; the rootkit's patches do not.
func TestIntegrityLiveGuest(t *testing.T) {
	k := testKernel(t)
	cfg := lab.GuestConfig{Name: "secaas-test-vmii", Files: map[string]string{}}
	if k.Hook != "" {
		cfg.Files["/secaas_hook.ko"] = k.Hook
	}
	g := startGuest(t, k, cfg)
	// A listener, and churn: processes and connections to it come and go.
	if _, err := g.Run("ip link set lo up && httpd -p 127.0.0.1:8081 && (while true; do /bin/true; echo x | nc 127.0.0.1 8081; done) </dev/null >/dev/null 2>&1 &", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// The guest's own kernel image: its code and syscall table are
	// compared with it too.
	raw, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	image, err := linuxkern.LoadImage(raw)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reports []*vmi.Report
	events := map[string][]any{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		vmi.Watch(ctx, vmi.WatchConfig{Memory: g.RAMFile, Interval: 300 * time.Millisecond, Indicators: vmi.AllIndicators, Image: image},
			func(kind string, v any) {
				mu.Lock()
				defer mu.Unlock()
				if kind == vmi.EventReport {
					reports = append(reports, v.(*vmi.Report))
				} else {
					events[kind] = append(events[kind], v)
				}
			})
	}()
	defer func() { cancel(); <-done }()
	waitCycles := func(n int) []*vmi.Report {
		t.Helper()
		mu.Lock()
		start := len(reports)
		mu.Unlock()
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			mu.Lock()
			got := len(reports) - start
			mu.Unlock()
			if got >= n {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(reports[start:])
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("fewer than %d cycles in 3 minutes", n)
		return nil
	}

	// Clean: nothing found over several cycles of churn; the listener shows.
	clean := waitCycles(8)
	mu.Lock()
	if len(events) > 0 {
		for kind, vs := range events {
			if kind != vmi.EventError {
				t.Errorf("clean guest: %d %s events: %+v", len(vs), kind, vs)
			}
		}
	}
	mu.Unlock()
	var sawListener bool
	for _, r := range clean {
		if r.Integrity == nil || len(r.Integrity.Findings) > 0 {
			t.Errorf("clean guest: integrity %+v (partial %v)", r.Integrity, r.Partial)
		}
		for _, s := range r.Sockets {
			if s.Comm == "httpd" && s.LocalPort == 8081 && s.State == "LISTEN" && s.LocalAddr == "127.0.0.1" {
				sawListener = true
			}
		}
	}
	if !sawListener {
		t.Errorf("the httpd listener on 127.0.0.1:8081 was never reported: %+v", clean[len(clean)-1].Sockets)
	}
	last := clean[len(clean)-1]
	if compared := last.Integrity.Checked["image_text"]; compared < 500 {
		t.Errorf("only %d functions compared with the kernel image", compared)
	}
	t.Logf("clean: %d cycles, last %.0f ms, checked %v, %d sockets, %d files, scan %v", len(clean), last.TookMS, last.Integrity.Checked,
		len(last.Sockets), len(last.Files), last.Scan)

	// The rootkit: a table entry, an inline jump, an ftrace hook, hidden.
	if k.Hook == "" {
		if os.Getenv("SECAAS_GUEST_KERNEL") == "" {
			labtest.Missing(t, "no test rootkit secaas_hook.ko: run scripts/guest-kernel.sh")
		}
		t.Logf("no test rootkit for %s: only the clean guest is checked", k.Version)
		return
	}
	addr := map[string]string{}
	for _, sym := range []string{"sys_call_table", "__x64_sys_kcmp", "tcp4_seq_show", "__x64_sys_getppid", "do_syscall_64", "x64_sys_call"} {
		out, err := g.Run("grep -w "+sym+" /proc/kallsyms | cut -c1-16", 30*time.Second)
		if err != nil || len(out) != 16 {
			t.Fatalf("%s: %v %q", sym, err, out)
		}
		addr[sym] = "0x" + out
	}
	out, err := g.Run(fmt.Sprintf("insmod /secaas_hook.ko table=%s nr=312 jmp=%s show=%s port=8081 kprobe=%s dispatch=%s x64=%s hide_module=1; echo rc=$?",
		addr["sys_call_table"], addr["__x64_sys_kcmp"], addr["tcp4_seq_show"], addr["__x64_sys_getppid"], addr["do_syscall_64"], addr["x64_sys_call"]), 30*time.Second)
	if err != nil || !strings.Contains(out, "rc=0") {
		t.Fatalf("insmod: %v: %s", err, out)
	}
	if out, _ := g.Run("cat /proc/net/tcp", 30*time.Second); strings.Contains(out, ":1F91 ") && strings.Contains(out, " 0A ") {
		t.Fatalf("the rootkit did not hide the listener from /proc/net/tcp:\n%s", out)
	}
	waitCycles(6)
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"syscall_table sys_call_table[312]": false, "inline_hook __x64_sys_kcmp": false, "ftrace tcp4_seq_show": false,
		"kprobe __x64_sys_getppid": false, "ftrace __x64_sys_getppid": false, "dispatch do_syscall_64+": false,
		"text_changed __x64_sys_kcmp+0x0": false, "text_changed do_syscall_64+": false, "table_changed sys_call_table[312]": false}
	for _, v := range events[vmi.EventKernelHook] {
		f := v.(linuxkern.Finding)
		key := f.Kind + " " + f.Target
		if (f.Kind == "dispatch" || f.Kind == "text_changed") && strings.HasPrefix(f.Target, "do_syscall_64+") {
			key = f.Kind + " do_syscall_64+" // the call's offset is the compiler's
		}
		if seen, ok := want[key]; ok {
			if seen {
				t.Errorf("%s reported twice", key)
			}
			want[key] = true
		}
		if f.Owner != "secaas_hook" {
			t.Errorf("finding %+v: owner %q, want secaas_hook", f, f.Owner)
		}
	}
	for key, seen := range want {
		if !seen {
			t.Errorf("no kernel_hook event for %s; events: %+v", key, events[vmi.EventKernelHook])
		}
	}
	if hm := events[vmi.EventHiddenModule]; len(hm) != 1 || hm[0].(linuxkern.ModuleCandidate).Name != "secaas_hook" {
		t.Errorf("hidden module events %+v, want secaas_hook once", hm)
	}
	hs := events[vmi.EventHiddenSocket]
	if len(hs) == 0 {
		t.Fatal("no hidden_socket event")
	}
	for _, v := range hs {
		h := v.(vmi.HiddenSocket)
		if h.Listing != "/proc/net/tcp" || h.Hook.Target != "tcp4_seq_show" {
			t.Errorf("hidden socket %+v", h)
		}
	}
	if !slices.ContainsFunc(hs, func(v any) bool {
		h := v.(vmi.HiddenSocket)
		return h.Comm == "httpd" && h.LocalPort == 8081 && h.State == "LISTEN"
	}) {
		t.Errorf("the hidden listener is not among the hidden sockets: %+v", hs)
	}
	for _, v := range events[vmi.EventHiddenProcess] {
		t.Errorf("false hidden process: %+v", v)
	}
}
