package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
	"secaas/internal/memio"
)

// tree writes a test directory: small and large files, an empty one,
// nesting, a directory big enough to be hashed (htree), a symlink.
func tree(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	root := t.TempDir()
	rng := rand.New(rand.NewPCG(4, 2))
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	files := map[string][]byte{
		"/etc/hostname":       []byte("guest\n"),
		"/big.bin":            big,
		"/empty":              nil,
		"/a/b/c/deep.txt":     []byte("deep\n"),
		"/many/file-0599.txt": []byte("last\n"),
	}
	for i := 0; i < 600; i++ {
		p := fmt.Sprintf("/many/file-%04d.txt", i)
		if _, ok := files[p]; !ok {
			files[p] = []byte(fmt.Sprintf("file %d\n", i))
		}
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("/etc/hostname", filepath.Join(root, "link"))
	return root, files
}

// mkfs makes a file system image of root with mke2fs -d (no mount needed).
func mkfs(t *testing.T, root string, args ...string) memio.Bytes {
	t.Helper()
	if _, err := exec.LookPath("mke2fs"); err != nil {
		labtest.Missing(t, "e2fsprogs not installed")
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	cmd := exec.Command("mke2fs", append(append([]string{"-q", "-F", "-d", root}, args...), img, "16M")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mke2fs %v: %v: %s", args, err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealFileSystems: images made by e2fsprogs — ext4 (extents, 64-bit,
// htree), ext4 with inline data and 1 KiB blocks, and ext2 (block maps
// with indirect blocks) — read back every file byte for byte, and each
// file's extents cover exactly its data.
func TestRealFileSystems(t *testing.T) {
	root, files := tree(t)
	for name, args := range map[string][]string{
		"ext4":        {"-t", "ext4"},
		"ext4-inline": {"-t", "ext4", "-O", "inline_data", "-b", "1024"},
		"ext2":        {"-t", "ext2"},
	} {
		t.Run(name, func(t *testing.T) {
			disk := mkfs(t, root, args...)
			fs, err := Open(disk)
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range files {
				ino, err := fs.Lookup(p)
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				got, err := fs.ReadFile(ino)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s: %d bytes (%v), want %d", p, len(got), err, len(want))
				}
				exts, err := fs.Extents(ino)
				if err != nil {
					t.Fatal(err)
				}
				var n int64
				for _, e := range exts {
					n += e.Len
					if !bytes.Equal(disk[e.Physical:e.Physical+e.Len], want[e.Logical:e.Logical+e.Len]) {
						t.Fatalf("%s: extent %+v does not hold the file's bytes", p, e)
					}
				}
				if ino.Flags&flagInline == 0 && n != int64(len(want)) {
					t.Fatalf("%s: extents cover %d of %d bytes", p, n, len(want))
				}
			}
			if _, err := fs.Lookup("/etc/nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("missing file: %v", err)
			}
			if _, err := fs.Lookup("/link/x"); err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("through a symlink: %v", err)
			}
			if _, err := fs.Lookup("/etc/hostname/x"); err == nil {
				t.Error("a file used as a directory")
			}
		})
	}
}

// TestCorruptImages: damage in the superblock, the group descriptors, an
// inode's extent tree or a directory gives an error, never a panic.
func TestCorruptImages(t *testing.T) {
	root, _ := tree(t)
	disk := mkfs(t, root, "-t", "ext4")
	if _, err := Open(memio.Bytes(disk[:1500])); err == nil {
		t.Error("a truncated superblock opened")
	}
	bad := append(memio.Bytes(nil), disk...)
	bad[1024+0x38] = 0
	if _, err := Open(bad); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("bad magic: %v", err)
	}
	// Flip bytes all over the metadata (first 1 MiB): lookups must end.
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 200; i++ {
		d := append(memio.Bytes(nil), disk...)
		for j := 0; j < 20; j++ {
			d[1024+rng.IntN(1<<20)] = byte(rng.Uint32())
		}
		fs, err := Open(d)
		if err != nil {
			continue
		}
		for _, p := range []string{"/big.bin", "/many/file-0300.txt", "/a/b/c/deep.txt"} {
			if ino, err := fs.Lookup(p); err == nil {
				fs.ReadFile(ino)
			}
		}
	}
}

func FuzzLookup(f *testing.F) {
	f.Add(make([]byte, 4096), "/a")
	f.Fuzz(func(t *testing.T, b []byte, p string) {
		d := make(memio.Bytes, 64<<10)
		copy(d[1024:], b)
		fs, err := Open(d)
		if err != nil {
			return
		}
		if ino, err := fs.Lookup(p); err == nil {
			fs.ReadFile(ino)
			fs.Extents(ino)
		}
	})
}
