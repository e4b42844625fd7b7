package guesttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// Kernel returns the guest kernel (Debian's, which make fetches), or
// the one $SECAAS_GUEST_KERNEL names, to run the guest tests on another
// kernel (a vmlinuz with its package's root/lib/modules beside it, as
// scripts/guest-kernel.sh lays them out).
func Kernel(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	if k := os.Getenv("SECAAS_GUEST_KERNEL"); k != "" {
		return k
	}
	kernel, err := lab.FindKernel(repoRoot())
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	return kernel
}

// repoRoot is the repository's top directory, from this file's place.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// OpenKernel reads a running guest's kernel from its RAM file (closed
// when the test ends).
func OpenKernel(t testing.TB, ramFile string) *linuxkern.Kernel {
	t.Helper()
	mem, err := guestmem.OpenShared(ramFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	k, err := linuxkern.Open(mem, mem.Size())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Start boots a test guest of cfg (256 MiB and a test directory unless
// set) that stops when the test ends, and logs its accelerator.
func Start(t testing.TB, cfg lab.GuestConfig) *lab.Guest {
	t.Helper()
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 256
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	g, err := lab.StartGuest(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	t.Logf("guest on %s", g.Accel)
	return g
}
