package hostpath

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// setup makes a root with a file, a secret outside it and the usual
// escape attempts planted inside it.
func setup(t *testing.T) (*Roots, string, string) {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	os.MkdirAll(filepath.Join(root, "vm"), 0o700)
	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "vm", "disk.raw"), []byte("disk"), 0o600)
	os.Symlink(secret, filepath.Join(root, "vm", "abs-link"))
	os.Symlink("../../secret", filepath.Join(root, "vm", "rel-link"))
	os.Symlink("disk.raw", filepath.Join(root, "vm", "inside-link"))
	os.Symlink(base, filepath.Join(root, "dir-link"))
	rs, err := OpenRoots(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	return rs, root, secret
}

func TestOpenStaysBeneath(t *testing.T) {
	rs, root, secret := setup(t)
	if f, err := rs.OpenFile(filepath.Join(root, "vm", "disk.raw"), os.O_RDONLY, 0); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	if f, err := rs.OpenFile(filepath.Join(root, "vm", "inside-link"), os.O_RDONLY, 0); err != nil {
		t.Fatalf("a symlink within the root: %v", err)
	} else {
		f.Close()
	}
	for _, name := range []string{
		secret,                                // outside every root
		root,                                  // the root itself is no file of a VM
		root + "/vm/../../secret",             // not clean
		root + "/vm//disk.raw",                // not clean
		"vm/disk.raw",                         // relative
		filepath.Join(root, "vm", "abs-link"), // absolute symlink out
		filepath.Join(root, "vm", "rel-link"), // relative symlink out
		filepath.Join(root, "dir-link", "secret"),    // directory symlink out
		filepath.Join(root+"-evil", "x"),             // a sibling with the root as prefix
		filepath.Join(root, "vm", "disk.raw\x00xyz"), // NUL
	} {
		for _, flag := range []int{os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
			f, err := rs.OpenFile(name, flag, 0)
			if err == nil {
				f.Close()
				t.Errorf("opened %q (flag %#x)", name, flag)
			}
		}
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret" {
		t.Fatalf("the secret changed: %q", b)
	}
}

func TestDialStaysBeneath(t *testing.T) {
	rs, root, _ := setup(t)
	outside := filepath.Join(t.TempDir(), "out.sock")
	oln, err := net.Listen("unix", outside)
	if err != nil {
		t.Fatal(err)
	}
	defer oln.Close()
	os.Symlink(outside, filepath.Join(root, "vm", "out-link.sock"))
	ctx := context.Background()
	if c, err := rs.DialUnix(ctx, filepath.Join(root, "vm", "out-link.sock")); err == nil {
		c.Close()
		t.Fatal("dialled a socket outside the root through a symlink")
	}
	if c, err := rs.DialUnix(ctx, outside); err == nil {
		c.Close()
		t.Fatal("dialled a socket outside the root")
	}
	if _, err := rs.DialUnix(ctx, filepath.Join(root, "vm", "disk.raw")); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Fatalf("dial a regular file: %v", err)
	}
	in := filepath.Join(root, "vm", "qmp.sock")
	ln, err := rs.ListenUnix(in)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := rs.DialUnix(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q %v", b, err)
	}
	c.Close()
}

func TestListenRemovesOnlyItsOwn(t *testing.T) {
	rs, root, secret := setup(t)
	// Never over a file that is not a socket, nor through a symlink.
	for _, name := range []string{filepath.Join(root, "vm", "disk.raw"), filepath.Join(root, "vm", "abs-link"), secret, filepath.Join(root, "dir-link", "new.sock")} {
		if ln, err := rs.ListenUnix(name); err == nil {
			ln.Close()
			t.Errorf("listened on %q", name)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "vm", "disk.raw")); err != nil || string(b) != "disk" {
		t.Fatalf("disk.raw: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "vm", "abs-link")); err != nil {
		t.Fatalf("the symlink was removed: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "host secret" {
		t.Fatal("the secret changed")
	}
	// A stale socket is replaced; Close removes the socket it made...
	name := filepath.Join(root, "vm", "front.sock")
	old, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	ln, err := rs.ListenUnix(name)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	if ln.Addr().String() != name {
		t.Errorf("addr %s", ln.Addr())
	}
	ln.Close()
	if _, err := os.Lstat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("its socket is still there: %v", err)
	}
	// ...but not what replaced it in the meantime.
	ln, err = rs.ListenUnix(name)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(name)
	os.WriteFile(name, []byte("someone else's"), 0o600)
	ln.Close()
	if b, err := os.ReadFile(name); err != nil || string(b) != "someone else's" {
		t.Fatalf("removed a file it did not create: %q %v", b, err)
	}
}

func TestRootsPickTheDeepest(t *testing.T) {
	base := t.TempDir()
	rs, err := OpenRoots(base, filepath.Join(base, "run"), base)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if len(rs.Dirs()) != 2 {
		t.Fatalf("dirs %v", rs.Dirs())
	}
	r, err := rs.For(filepath.Join(base, "run", "x.sock"))
	if err != nil || r.Dir != filepath.Join(base, "run") {
		t.Fatalf("%v %v", r, err)
	}
	if _, err := OpenRoots("relative"); err == nil {
		t.Fatal("a relative root")
	}
	if _, err := rs.For("/etc/shadow"); !errors.Is(err, ErrOutside) {
		t.Fatalf("outside: %v", err)
	}
}

// TestWriteFileAtomic: the file is replaced whole, private, and no
// temporary file stays behind.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "state.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFileAtomic(name, []byte(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(name)
		if err != nil || string(b) != content {
			t.Fatalf("read %q %v", b, err)
		}
	}
	if fi, _ := os.Stat(name); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}
