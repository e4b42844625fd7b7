package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
)

// serve starts a server on a raw image file and returns its socket.
func serve(t *testing.T, img string, cfg func(*Server)) (string, *Server) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Export: "disk", Size: st.Size(), Backend: f}
	if cfg != nil {
		cfg(s)
	}
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close(); s.CloseConns(); f.Close() })
	return sock, s
}

func image(t *testing.T, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServerWithOurClient: writes reach the image and OnWrite, reads see
// them, isolated ranges read as zeros, bad requests get errors.
func TestServerWithOurClient(t *testing.T) {
	img := image(t, 4<<20)
	var mu sync.Mutex
	var writes [][2]int64
	sock, _ := serve(t, img, func(s *Server) {
		s.OnWrite = func(off, n int64) { mu.Lock(); writes = append(writes, [2]int64{off, n}); mu.Unlock() }
		s.Zero = func(off, n int64) []Extent { return []Extent{{Offset: 8192, Length: 4096}} }
	})
	c, err := Dial(context.Background(), sock, "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := bytes.Repeat([]byte{0x5a}, 16384)
	if _, err := c.WriteAt(data, 4096); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 16384)
	if _, err := c.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	want := append(append(bytes.Repeat([]byte{0x5a}, 4096), make([]byte, 4096)...), bytes.Repeat([]byte{0x5a}, 8192)...)
	if !bytes.Equal(got, want) {
		t.Fatal("read-back differs (isolated 8192..12288 must read as zeros, the rest as written)")
	}
	onDisk, _ := os.ReadFile(img)
	if !bytes.Equal(onDisk[4096:20480], data) {
		t.Fatal("the image does not hold the write (isolation must only hide it)")
	}
	if len(writes) != 1 || writes[0] != [2]int64{4096, 16384} {
		t.Fatalf("OnWrite saw %v", writes)
	}
	var ne *Error
	if _, err := c.WriteAt(data, 4<<20-100); !errors.As(err, &ne) || ne.Errno != errNoSpc {
		t.Fatalf("write past the end: %v", err)
	}
	if _, err := Dial(context.Background(), sock, "other"); err == nil {
		t.Fatal("unknown export opened")
	}
}

// TestServerWithQemuIO: QEMU's own NBD client writes and reads through the
// server (interoperability).
func TestServerWithQemuIO(t *testing.T) {
	if _, err := exec.LookPath("qemu-io"); err != nil {
		labtest.Missing(t, "qemu-io not installed")
	}
	img := image(t, 8<<20)
	sock, _ := serve(t, img, nil)
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0xcd 65536 1M", "-c", "flush", "-c", "read -P 0xcd 65536 1M", "-c", "read -P 0 0 64k",
		"nbd+unix:///disk?socket="+sock).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Pattern verification failed") {
		t.Fatalf("qemu-io: %v %s", err, out)
	}
	b, _ := os.ReadFile(img)
	if !bytes.Equal(b[65536:65536+1<<20], bytes.Repeat([]byte{0xcd}, 1<<20)) {
		t.Fatal("image does not hold qemu-io's write")
	}
}

// TestKill9LosesNoAcknowledgedWrite: a server process is killed with
// SIGKILL in the middle of a random write load; after a restart every
// write it acknowledged reads back.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	img := image(t, 16<<20)
	sock := filepath.Join(t.TempDir(), "k.sock")
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
		cmd.Env = append(os.Environ(), "SECAAS_NBD_HELPER="+img+","+sock)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			if c, err := Dial(context.Background(), sock, "disk"); err == nil {
				c.Close()
				return cmd
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("helper server did not start")
		return nil
	}
	cmd := start()
	c, err := Dial(context.Background(), sock, "disk")
	if err != nil {
		t.Fatal(err)
	}
	acked := map[int64]byte{} // 4 KiB block -> pattern
	rng := rand.New(rand.NewPCG(3, 3))
	killAt := 300 + rng.IntN(200)
	for i := 0; ; i++ {
		if i == killAt {
			cmd.Process.Signal(syscall.SIGKILL)
		}
		blk := int64(rng.IntN(4096))
		pat := byte(1 + rng.IntN(250))
		_, err := c.WriteAt(bytes.Repeat([]byte{pat}, 4096), blk*4096)
		if err != nil {
			break // the server died: this write was not acknowledged
		}
		acked[blk] = pat
	}
	cmd.Wait()
	cmd = start()
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c2, err := Dial(context.Background(), sock, "disk")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	buf := make([]byte, 4096)
	for blk, pat := range acked {
		if _, err := c2.ReadAt(buf, blk*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, bytes.Repeat([]byte{pat}, 4096)) {
			t.Fatalf("block %d: acknowledged pattern %#x lost (got %#x)", blk, pat, buf[0])
		}
	}
	t.Logf("%d writes acknowledged before SIGKILL, all read back after restart", len(acked))
}

// TestHelperServer is the server process of TestKill9LosesNoAcknowledgedWrite.
func TestHelperServer(t *testing.T) {
	spec := os.Getenv("SECAAS_NBD_HELPER")
	if spec == "" {
		t.Skip("helper process only")
	}
	img, sock, _ := strings.Cut(spec, ",")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	(&Server{Export: "disk", Size: st.Size(), Backend: f}).Serve(ln)
}

func FuzzServer(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x03IHAVEOPT\x00\x00\x00\x07\x00\x00\x00\x0a\x00\x00\x00\x04disk\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		img := make(memImage, 1<<16)
		s := &Server{Export: "disk", Size: int64(len(img)), Backend: img}
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() { s.serveConn(a); a.Close(); close(done) }()
		go io.Copy(io.Discard, b)
		b.SetDeadline(time.Now().Add(time.Second))
		b.Write(in)
		b.Close()
		<-done
	})
}

type memImage []byte

func (m memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m)) {
		return 0, io.EOF
	}
	return copy(p, m[off:]), nil
}
func (m memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("out of range")
	}
	return copy(m[off:], p), nil
}
func (m memImage) Sync() error { return nil }
