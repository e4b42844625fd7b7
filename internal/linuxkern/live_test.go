package linuxkern_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// TestVMCoreInfoFromLiveGuest finds VMCOREINFO in a running Debian guest's
// RAM and checks it against the guest itself: the release matches uname,
// KASLR is on, and the symbol it gives for init_uts_ns, translated with the
// recovered phys_base, holds the guest's own uname strings.
func TestVMCoreInfoFromLiveGuest(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		labtest.Missing(t, "qemu-system-x86_64 not installed")
	}
	kernel, err := lab.FindKernel("../..")
	if err != nil {
		labtest.Missing(t, err.Error())
	}
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: "secaas-test-kern", Kernel: kernel, MemMiB: 256, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	release, err := g.Run("uname -r", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m, err := guestmem.OpenShared(g.RAMFile)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
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
