package guesttest

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
)

// Kernel returns the guest kernel (Debian's, which make fetches).
func Kernel(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
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
