package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
)

// qemuNBD serves a qcow2 image with a persistent dirty bitmap b0 that
// recorded one 16 KiB write at 400 KiB (qemu-io).
func qemuNBD(t *testing.T) (sock string) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Missing(t, tool+" not installed")
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "d.qcow2")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v %s", name, args, err, out)
		}
	}
	run("qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	run("qemu-io", "-c", "write -P 0x11 0 64k", img) // before the bitmap: not dirty
	run("qemu-img", "bitmap", "--add", "-g", "4096", img, "b0")
	run("qemu-io", "-c", "write -P 0xab 409600 16k", img)
	sock = filepath.Join(dir, "nbd.sock")
	cmd := exec.Command("qemu-nbd", "--socket="+sock, "--format=qcow2", "--export-name=disk", "-B", "b0", "--read-only", "--persistent", "--shared=4", img)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := Dial(context.Background(), sock, "disk"); err == nil {
			c.Close()
			return sock
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("qemu-nbd did not come up")
	return ""
}

// TestClientAgainstQemuNBD: reads return the image's bytes (data and
// holes), and block status on qemu:dirty-bitmap:b0 gives exactly the one
// extent written while the bitmap was recording.
func TestClientAgainstQemuNBD(t *testing.T) {
	sock := qemuNBD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, sock, "disk", "qemu:dirty-bitmap:b0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Size != 64<<20 || c.Flags&tflagReadOnly == 0 {
		t.Fatalf("size %d flags %#x", c.Size, c.Flags)
	}
	buf := make([]byte, 100<<10)
	if _, err := c.ReadAt(buf, 380<<10); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 100<<10)
	copy(want[(400-380)<<10:], bytes.Repeat([]byte{0xab}, 16<<10))
	if !bytes.Equal(buf, want) {
		t.Fatal("read differs from what qemu-io wrote")
	}
	head := make([]byte, 64<<10)
	c.ReadAt(head, 0)
	if !bytes.Equal(head, bytes.Repeat([]byte{0x11}, 64<<10)) {
		t.Fatal("first 64k differ")
	}
	exts, err := c.BlockStatus("qemu:dirty-bitmap:b0", 0, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	var dirty []Extent
	var covered int64
	for _, e := range exts {
		covered += e.Length
		if e.Flags&1 != 0 {
			dirty = append(dirty, e)
		}
	}
	if covered != c.Size || len(dirty) != 1 || dirty[0].Offset != 409600 || dirty[0].Length != 16384 {
		t.Fatalf("dirty %+v (covered %d of %d)", dirty, covered, c.Size)
	}
	if _, err := c.BlockStatus("qemu:allocation-depth", 0, 10); err == nil {
		t.Fatal("an unnegotiated context answered")
	}
	if _, err := Dial(ctx, sock, "nope"); err == nil {
		t.Fatal("an unknown export opened")
	}
}

// FuzzClient: a client facing a hostile server (random bytes after a valid
// greeting) ends with an error, never a panic or a hang.
func FuzzClient(f *testing.F) {
	greeting := func() []byte {
		b := make([]byte, 0, 18)
		b = binary.BigEndian.AppendUint64(b, magicInit)
		b = binary.BigEndian.AppendUint64(b, magicOpt)
		return binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
	}
	f.Add(append(greeting(), make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, rest []byte) {
		a, b := net.Pipe()
		go func() {
			b.Write(append(greeting(), rest...))
			io.Copy(io.Discard, b)
		}()
		c := &Client{conn: a, rd: bufio.NewReader(a), contexts: map[string]uint32{}}
		a.SetDeadline(time.Now().Add(20 * time.Millisecond))
		if err := c.handshake("disk", []string{"qemu:dirty-bitmap:b"}); err == nil {
			buf := make([]byte, 4096)
			c.ReadAt(buf, 0)
			c.BlockStatus("qemu:dirty-bitmap:b", 0, 1<<20)
		}
		a.Close()
		b.Close()
	})
}
