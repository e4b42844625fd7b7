package hyperav

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/av"
	"secaas/internal/disk"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
)

func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!" + `$H+H*`)
}

// partitionedDisk makes an ext4 file system of root's files in partition
// 1 of a raw disk image.
func partitionedDisk(t *testing.T, root string) string {
	t.Helper()
	if _, err := exec.LookPath("mke2fs"); err != nil {
		labtest.Missing(t, "e2fsprogs not installed")
	}
	files := map[string][]byte{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			files["/"+rel] = b
		}
		return nil
	})
	p, err := lab.MakeDataDisk(t.TempDir(), files, 32, true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func clamd(t *testing.T) *av.Clamd {
	t.Helper()
	if _, err := exec.LookPath("clamd"); err != nil {
		labtest.Missing(t, "clamd not installed")
	}
	dir := t.TempDir()
	if _, err := av.WriteDatabase(filepath.Join(dir, "db"), ""); err != nil {
		t.Fatal(err)
	}
	c, err := av.StartClamd(context.Background(), av.ClamdConfig{Dir: dir, DatabaseDir: filepath.Join(dir, "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// TestScanImageOffline: files inside a partitioned disk image, raw and
// qcow2, with no VM: EICAR is found and its chunks become INFECTED; a
// clean file is CLEAN and, untouched, is answered again from cache with
// zero bytes read; after a write to its sectors it is read and scanned
// again; the state survives a reload.
func TestScanImageOffline(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "x"), append(bytes.Repeat([]byte("#"), 10000), eicar()...), 0o644)
	clean := bytes.Repeat([]byte("clean data\n"), 2000)
	os.WriteFile(filepath.Join(root, "etc", "ok"), clean, 0o644)
	rawPath := partitionedDisk(t, root)
	c := clamd(t)
	ctx := context.Background()

	img, err := disk.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	statePath := filepath.Join(t.TempDir(), "state")
	st, err := LoadState(statePath, img.Size(), DefaultGranularity)
	if err != nil {
		t.Fatal(err)
	}
	sc := &Scanner{Disk: img, State: st, AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}
	bad, err := sc.ScanFile(ctx, "/etc/x")
	if err != nil || bad.Verdict != "INFECTED" || bad.Cached || len(bad.Ranges) == 0 {
		t.Fatalf("eicar: %+v %v", bad, err)
	}
	if got := st.ChunkState(bad.Ranges[0].Start); got != Infected {
		t.Fatalf("infected file's chunk is %s", got)
	}
	ok, err := sc.ScanFile(ctx, "/etc/ok")
	if err != nil || ok.Verdict != "CLEAN" || ok.BytesRead < int64(len(clean)) {
		t.Fatalf("clean: %+v %v", ok, err)
	}
	again, err := sc.ScanFile(ctx, "/etc/ok")
	if err != nil || !again.Cached || again.BytesRead != 0 || again.Verdict != "CLEAN" {
		t.Fatalf("untouched file: %+v %v", again, err)
	}
	// The state persists: a new scanner over a reloaded state still
	// answers from cache.
	st2, err := LoadState(statePath, img.Size(), DefaultGranularity)
	if err != nil {
		t.Fatal(err)
	}
	sc.State = st2
	if r, err := sc.ScanFile(ctx, "/etc/ok"); err != nil || !r.Cached {
		t.Fatalf("after reload: %+v %v", r, err)
	}
	// The guest writes EICAR over the clean file's first block.
	f, _ := os.OpenFile(rawPath, os.O_WRONLY, 0)
	f.WriteAt(eicar(), ok.Ranges[0].Start)
	f.Close()
	st2.MarkWritten(ok.Ranges[0].Start, int64(len(eicar())))
	r, err := sc.ScanFile(ctx, "/etc/ok")
	if err != nil || r.Cached || r.Verdict != "INFECTED" {
		t.Fatalf("after a write: %+v %v", r, err)
	}
	if n := st2.Counts()[Infected]; n < 2 {
		t.Fatalf("%d infected chunks", n)
	}

	// The same disk as qcow2.
	q := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", rawPath, q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	qi, err := disk.Open(q)
	if err != nil {
		t.Fatal(err)
	}
	defer qi.Close()
	st3, _ := NewState(qi.Size(), DefaultGranularity)
	sq := &Scanner{Disk: qi, State: st3, AV: sc.AV}
	if r, err := sq.ScanFile(ctx, "/etc/x"); err != nil || r.Verdict != "INFECTED" {
		t.Fatalf("qcow2: %+v %v", r, err)
	}
}

// TestFrontRefusesQcow2: front mode serves a file's bytes as the disk, so a
// qcow2 image must be refused, not handed to the guest as raw.
func TestFrontRefusesQcow2(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		labtest.Missing(t, "qemu-img not installed")
	}
	dir := t.TempDir()
	q := filepath.Join(dir, "d.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", q, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	_, err := NewService(ServiceConfig{Mode: "front", Disk: q, Socket: filepath.Join(dir, "s.sock"), Every: time.Hour, Dir: filepath.Join(dir, "svc")}, func(string, any) {})
	if err == nil || !strings.Contains(err.Error(), "raw") {
		t.Fatalf("qcow2 in front mode: %v", err)
	}
}

// TestScanNTFSImage: the same answers on an NTFS partition (mkntfs, filled
// through ntfs-3g): EICAR inside a large file (its clusters) and in a tiny
// resident one (in its MFT record) is found; a clean file, untouched, is
// answered from cache with zero bytes read, and after a write to its
// clusters it is read and scanned again.
func TestScanNTFSImage(t *testing.T) {
	for _, tool := range []string{"mkntfs", "ntfs-3g"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Missing(t, tool+" not installed")
		}
	}
	clean := bytes.Repeat([]byte("clean data\n"), 20000)
	p, err := lab.MakeNTFSDisk(t.TempDir(), map[string][]byte{
		"/Windows/x.exe":  append(bytes.Repeat([]byte("#"), 100000), eicar()...),
		"/Windows/r.com":  eicar(),
		"/Users/a/ok.txt": clean,
	}, 16, true)
	if err != nil {
		t.Fatal(err)
	}
	img, err := disk.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	c := clamd(t)
	ctx := context.Background()
	st, _ := NewState(img.Size(), DefaultGranularity)
	sc := &Scanner{Disk: img, State: st, AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}
	for _, path := range []string{"/Windows/x.exe", "/windows/R.COM"} {
		if r, err := sc.ScanFile(ctx, path); err != nil || r.Verdict != "INFECTED" {
			t.Fatalf("%s: %+v %v", path, r, err)
		}
	}
	ok, err := sc.ScanFile(ctx, "/Users/a/ok.txt")
	if err != nil || ok.Verdict != "CLEAN" || ok.DataRead < int64(len(clean)) || len(ok.Ranges) == 0 || ok.Ranges[0].Start < 1<<20 {
		t.Fatalf("clean: %+v %v", ok, err)
	}
	if r, err := sc.ScanFile(ctx, "/Users/a/ok.txt"); err != nil || !r.Cached || r.BytesRead != 0 {
		t.Fatalf("untouched: %+v %v", r, err)
	}
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt(eicar(), ok.Ranges[0].Start)
	f.Close()
	st.MarkWritten(ok.Ranges[0].Start, int64(len(eicar())))
	if r, err := sc.ScanFile(ctx, "/Users/a/ok.txt"); err != nil || r.Cached || r.Verdict != "INFECTED" {
		t.Fatalf("after a write to its clusters: %+v %v", r, err)
	}
}
