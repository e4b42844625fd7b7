package ntfs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
)

// needTools skips (or, under CI, fails) without mkntfs and ntfs-3g.
func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mkntfs", "ntfs-3g"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.Missing(t, tool+" not installed (ntfs-3g)")
		}
	}
	if os.Geteuid() != 0 {
		labtest.Missing(t, "ntfs-3g needs root to mount the image it fills")
	}
}

// image makes an NTFS image (no partition table) of files.
func image(t testing.TB, files map[string][]byte, mib int) []byte {
	t.Helper()
	needTools(t)
	p, err := lab.MakeNTFSDisk(t.TempDir(), files, mib, false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestLookupAndExtents: on a real NTFS (mkntfs, filled through ntfs-3g),
// a file's extents hold exactly its bytes, in order; a small file is
// resident; names compare case-insensitively; directories and missing
// paths are errors.
func TestLookupAndExtents(t *testing.T) {
	big, mid := random(300_000, 1), random(50_000, 2)
	files := map[string][]byte{"/big.bin": big, "/Dir/Sub/mid.dat": mid, "/Dir/small.txt": []byte("resident\n"), "/empty": nil}
	img := image(t, files, 8)
	fs, err := Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]byte{"/big.bin": big, "/dir/sub/MID.DAT": mid} {
		f, err := fs.Lookup(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if f.Resident || f.Size != int64(len(want)) || len(f.Extents) == 0 {
			t.Fatalf("%s: %+v", path, f)
		}
		var got []byte
		for _, e := range f.Extents {
			got = append(got, img[e.Start:e.Start+e.Len]...)
		}
		if !bytes.Equal(got[:len(want)], want) || int64(len(got)) > f.Size+fs.ClusterSize {
			t.Fatalf("%s: the extents %v do not hold the file's bytes", path, f.Extents)
		}
		data, err := fs.ReadFile(f)
		if err != nil || !bytes.Equal(data, want) {
			t.Fatalf("%s: ReadFile: %v", path, err)
		}
	}
	small, err := fs.Lookup("/dir/small.txt")
	if err != nil || !small.Resident || small.Size != 9 || len(small.Extents) != 0 {
		t.Fatalf("small file: %+v %v", small, err)
	}
	if data, err := fs.ReadFile(small); err != nil || string(data) != "resident\n" {
		t.Fatalf("small file reads %q %v", data, err)
	}
	if e, err := fs.Lookup("/empty"); err != nil || e.Size != 0 {
		t.Fatalf("empty file: %+v %v", e, err)
	}
	if _, err := fs.Lookup("/dir"); err == nil {
		t.Fatal("a directory was accepted as a file")
	}
	if _, err := fs.Lookup("/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open(bytes.NewReader(make([]byte, 1<<20))); err == nil {
		t.Fatal("zeros opened as NTFS")
	}
}

// FuzzLookup: a damaged NTFS gives errors, never a panic or a hang.
func FuzzLookup(f *testing.F) {
	if _, err := exec.LookPath("mkntfs"); err == nil && os.Geteuid() == 0 {
		dir := f.TempDir()
		p, err := lab.MakeNTFSDisk(dir, map[string][]byte{"/a/b.txt": []byte("hello"), "/big": random(20_000, 3)}, 2, false)
		if err == nil {
			img, _ := os.ReadFile(p)
			f.Add(img)
		}
	}
	f.Add(append([]byte{0xeb, 0x52, 0x90}, []byte("NTFS    ")...))
	f.Fuzz(func(t *testing.T, img []byte) {
		fs, err := Open(bytes.NewReader(img))
		if err != nil {
			return
		}
		for _, p := range []string{"/a/b.txt", "/big", "/x"} {
			if file, err := fs.Lookup(p); err == nil {
				for _, e := range file.Extents {
					if e.Start < 0 || e.Len <= 0 {
						t.Fatalf("extent %+v", e)
					}
				}
				if file.Size <= 1<<20 {
					fs.ReadFile(file)
				}
			}
		}
	})
}

// TestFragmentedFile: a file written into the holes left by deleted files
// has several runs; its extents, in file order, still hold exactly its
// bytes.
func TestFragmentedFile(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	p, err := lab.MakeNTFSDisk(dir, map[string][]byte{"/keep": []byte("x")}, 8, false)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("ntfs-3g", p, mnt).CombinedOutput(); err != nil {
		t.Fatalf("ntfs-3g: %v %s", err, out)
	}
	// Two files grown in turns, a piece at a time, each piece flushed:
	// their clusters interleave.
	frag := random(200_000, 99)
	fa, err1 := os.Create(filepath.Join(mnt, "frag"))
	fb, err2 := os.Create(filepath.Join(mnt, "other"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for off := 0; off < len(frag); off += 16384 {
		fa.Write(frag[off:min(off+16384, len(frag))])
		fa.Sync()
		fb.Write(random(16384, uint64(off)))
		fb.Sync()
	}
	fa.Close()
	fb.Close()
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	img, _ := os.ReadFile(p)
	fs, err := Open(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.Lookup("/frag")
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, e := range f.Extents {
		got = append(got, img[e.Start:e.Start+e.Len]...)
	}
	t.Logf("%d extents: %v", len(f.Extents), f.Extents)
	if len(f.Extents) < 2 {
		t.Fatalf("the file is not fragmented (%d extent): the test proves nothing", len(f.Extents))
	}
	if !bytes.Equal(got[:len(frag)], frag) {
		t.Fatal("the extents do not hold the fragmented file's bytes in order")
	}
}
