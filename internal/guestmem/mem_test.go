package guestmem_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
)

// TestLiveGuestRAM boots Debian's kernel under QEMU and reads the running
// guest's RAM from the host: the kernel banner, and a string the guest has
// just written, with nothing installed in the guest.
func TestLiveGuestRAM(t *testing.T) {
	kernel := guesttest.Kernel(t)
	ctx := context.Background()
	g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-test-mem", Kernel: kernel, MemMiB: 256, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	uname, err := g.Run("uname -r", 30*time.Second)
	if err != nil || !strings.Contains(uname, "6.") {
		t.Fatalf("guest uname: %q %v", uname, err)
	}
	m, err := guestmem.OpenShared(g.RAMFile)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != 256<<20 {
		t.Fatalf("RAM size %d", m.Size())
	}
	if m.Index([]byte("Linux version "+strings.TrimSpace(uname)), 0) < 0 {
		t.Fatal("kernel banner not found in guest RAM")
	}
	marker := fmt.Sprintf("SECAAS-MARKER-%d", rand.Uint64())
	if m.Index([]byte(marker), 0) >= 0 {
		t.Fatal("marker present before the guest wrote it")
	}
	// Typed with an empty quote inside, so that only the guest's own write
	// (the file's page) holds the marker, not the console's input buffer.
	if _, err := g.Run("echo "+marker[:7]+`""`+marker[7:]+" > /tmp/m", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.Index([]byte(marker), 0) < 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m.Index([]byte(marker), 0) < 0 {
		t.Fatal("the guest's write is not visible in its RAM from the host")
	}
	buf := make([]byte, 16)
	if _, err := m.ReadAt(buf, m.Size()); err == nil {
		t.Fatal("read past the end of RAM succeeded")
	}
}
