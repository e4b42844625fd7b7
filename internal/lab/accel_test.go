package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
)

// wrapper writes a stand-in qemu-system-x86_64 that does what body says
// when asked for -enable-kvm and runs the real QEMU otherwise.
func wrapper(t *testing.T, body string) string {
	t.Helper()
	real, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		real = "/usr/bin/qemu-system-x86_64"
	}
	path := filepath.Join(t.TempDir(), "qemu-wrapper")
	sh := "#!/bin/sh\ncase \" $* \" in *\" -enable-kvm \"*) " + body + " ;; esac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeDev stands for a /dev/kvm that exists (whatever the host has).
func fakeDev(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAccelSetting(t *testing.T) {
	p := accelProber{devKVM: "/nonexistent/kvm", qemu: "false", timeout: time.Second}
	ctx := context.Background()
	c, err := p.choose(ctx, "tcg")
	if err != nil || c.Accel != AccelTCG {
		t.Fatalf("tcg: %v %v", c, err)
	}
	if _, err := p.choose(ctx, "fast"); !errors.Is(err, ErrAccel) {
		t.Fatalf("a bad setting: %v", err)
	}
	c, err = p.choose(ctx, "auto")
	if err != nil || c.Accel != AccelTCG || !strings.Contains(c.Reason, "no /nonexistent/kvm") {
		t.Fatalf("auto without the device: %v %v", c, err)
	}
	if _, err := p.choose(ctx, "kvm"); !errors.Is(err, ErrAccel) {
		t.Fatalf("kvm without the device: %v", err)
	}
	t.Setenv(accelEnv, "tcg")
	if c, err := p.choose(ctx, ""); err != nil || c.Accel != AccelTCG || !strings.Contains(c.Reason, accelEnv) {
		t.Fatalf("the environment's setting: %v %v", c, err)
	}
}

// TestAccelProbe runs the probe against QEMU wrappers that act as the
// hosts of LAB.md do: one aborts under KVM, one hangs, one (real QEMU
// under TCG in KVM's place) boots the guest. Only the last may give KVM.
func TestAccelProbe(t *testing.T) {
	if testing.Short() {
		labtest.Missing(t, "-short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	if _, err := exec.LookPath("busybox"); err != nil && !fileExists("/bin/busybox") {
		labtest.Missing(t, "busybox-static not installed")
	}
	kernel, err := FindKernel("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	ctx := context.Background()
	cases := []struct {
		name, body string
		timeout    time.Duration
		want       Accel
		reason     string
	}{
		{"aborts", `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`, 10 * time.Second, AccelTCG, "failed to set MSR 0x10a"},
		{"hangs", `exec sleep 60`, 2 * time.Second, AccelTCG, "did not reach its init"},
		{"exits-silently", `exit 1`, 10 * time.Second, AccelTCG, "exit status 1"},
		// Real QEMU without -enable-kvm -cpu host: a guest that really runs.
		{"boots", `shift 3; exec qemu-system-x86_64 "$@"`, 2 * time.Minute, AccelKVM, "booted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := accelProber{devKVM: fakeDev(t), qemu: wrapper(t, tc.body), kernel: kernel, timeout: tc.timeout,
				cache: filepath.Join(t.TempDir(), "accel.json")}
			t0 := time.Now()
			c, err := p.choose(ctx, "auto")
			if err != nil || c.Accel != tc.want || !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("auto: %v %v, want %s (%q)", c, err, tc.want, tc.reason)
			}
			if c.Fallback != (tc.want == AccelTCG) {
				t.Fatalf("fallback %v for %v", c.Fallback, c)
			}
			t.Logf("auto: %s in %s", c, time.Since(t0).Round(time.Millisecond))
			// Forced KVM is refused where the probe failed.
			_, err = p.choose(ctx, "kvm")
			if (err == nil) != (tc.want == AccelKVM) {
				t.Fatalf("kvm: %v", err)
			}
			// The answer is kept for this boot of the host: a new process
			// (an empty memo) reads it back without booting.
			accelMu.Lock()
			clear(accelMemo)
			accelMu.Unlock()
			got, ok := p.readCache(p.qemu + "\x00" + binaryStamp(p.qemu))
			if bootID() != "" && (!ok || got != c) {
				t.Fatalf("cache: %v %v, want %v", got, ok, c)
			}
		})
	}
}

// TestGuestOnBrokenKVM boots a lab guest through a QEMU that aborts under
// KVM, as on the hosts of LAB.md: the guest must come up under TCG.
func TestGuestOnBrokenKVM(t *testing.T) {
	if testing.Short() {
		labtest.Missing(t, "-short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	kernel, err := FindKernel("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	t.Setenv(qemuEnv, wrapper(t, `echo "failed to set MSR 0x10a to 0x69" >&2; exit 134`))
	t.Setenv(accelEnv, "auto")
	g, err := StartGuest(context.Background(), GuestConfig{Name: "secaas-test-brokenkvm", Kernel: kernel, MemMiB: 128, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	if g.Accel.Accel != AccelTCG {
		t.Fatalf("accelerator %v", g.Accel)
	}
	out, err := g.Run("echo up", 30*time.Second)
	if err != nil || out != "up" {
		t.Fatalf("guest shell: %q %v", out, err)
	}
	t.Logf("guest ran on %s", g.Accel)
}
