package vmi_test

import (
	"os"
	"os/exec"
	"testing"

	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/lab/labtest"
)

// testKernel is the cached generic Debian kernel, with its test modules,
// or the kernel $SECAAS_GUEST_KERNEL names; the test is skipped (failed
// under CI) without QEMU or the kernel.
func testKernel(t *testing.T) lab.GuestKernel {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	if k := os.Getenv("SECAAS_GUEST_KERNEL"); k != "" {
		return lab.KernelAt(k)
	}
	ks, err := lab.FindKernels("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	return ks[0]
}

// startGuest boots a 256 MiB test guest of kernel k and cfg that stops
// with the test.
func startGuest(t *testing.T, k lab.GuestKernel, cfg lab.GuestConfig) *lab.Guest {
	t.Helper()
	cfg.Kernel = k.Vmlinuz
	return guesttest.Start(t, cfg)
}
