package hostpath

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"secaas/internal/inventory"
)

// ErrOutside: a path is not beneath any configured root.
var ErrOutside = inventory.ErrOutside

// Host opens, dials and listens on host paths for a node's services.
type Host interface {
	// OpenFile opens a file (os.OpenFile's flags).
	OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error)
	// DialUnix connects to a unix socket.
	DialUnix(ctx context.Context, name string) (net.Conn, error)
	// ListenUnix creates a unix socket and listens on it; closing the
	// listener removes that socket and nothing else.
	ListenUnix(name string) (net.Listener, error)
}

// Root is one directory tree the daemon may touch.
type Root struct {
	Dir string // absolute and clean
	r   *os.Root
}

// OpenRoot opens dir (created 0700 if missing) as a root.
func OpenRoot(dir string) (*Root, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("root %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	return &Root{Dir: dir, r: r}, nil
}

// Close releases the root's directory.
func (r *Root) Close() error { return r.r.Close() }

// Rel returns name relative to the root, or ErrOutside. name must pass
// inventory.CheckPath (absolute, clean, no control characters).
func (r *Root) Rel(name string) (string, error) {
	if err := inventory.CheckPath(name); err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(name, r.Dir+"/")
	if !ok || rel == "" {
		return "", fmt.Errorf("%q: %w %s", name, ErrOutside, r.Dir)
	}
	return rel, nil
}

// OpenFile opens name beneath the root.
func (r *Root) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	rel, err := r.Rel(name)
	if err != nil {
		return nil, err
	}
	return r.r.OpenFile(rel, flag, perm)
}

// opath opens rel beneath the root as an O_PATH descriptor (the last
// component is followed if it is a symlink that stays beneath the root).
func (r *Root) opath(rel string) (*os.File, error) {
	return r.r.OpenFile(rel, unix.O_PATH|os.O_RDONLY, 0)
}

// DialUnix connects to the unix socket name beneath the root, through
// an O_PATH descriptor of the socket the root resolution found.
func (r *Root) DialUnix(ctx context.Context, name string) (net.Conn, error) {
	rel, err := r.Rel(name)
	if err != nil {
		return nil, err
	}
	f, err := r.opath(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("%s: not a unix socket", name)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(int(f.Fd())))
}

// ListenUnix creates the unix socket name beneath the root. A socket
// left at that name (by an earlier run) is replaced; anything else there
// is an error, never removed.
func (r *Root) ListenUnix(name string) (net.Listener, error) {
	rel, err := r.Rel(name)
	if err != nil {
		return nil, err
	}
	dirRel, base := filepath.Dir(rel), filepath.Base(rel)
	dir, err := r.r.OpenFile(dirRel, unix.O_PATH|unix.O_DIRECTORY|os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	var st unix.Stat_t
	switch err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK:
		if err := unix.Unlinkat(dfd, base, 0); err != nil {
			return nil, fmt.Errorf("%s: remove the old socket: %w", name, err)
		}
	case err == nil:
		return nil, fmt.Errorf("%s: exists and is not a socket: not replacing it", name)
	case !errors.Is(err, syscall.ENOENT):
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	path := "/proc/self/fd/" + strconv.Itoa(dfd) + "/" + base
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// The socket's identity, so that Close removes it only if it is still
	// the one created here.
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ln.SetUnlinkOnClose(false)
	return &listener{UnixListener: ln, root: r, rel: rel, dev: st.Dev, ino: st.Ino}, nil
}

// listener removes its own socket on Close, and only that.
type listener struct {
	*net.UnixListener
	root     *Root
	rel      string
	dev, ino uint64
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	dir, derr := l.root.r.OpenFile(filepath.Dir(l.rel), unix.O_PATH|unix.O_DIRECTORY|os.O_RDONLY, 0)
	if derr != nil {
		return err
	}
	defer dir.Close()
	base := filepath.Base(l.rel)
	var st unix.Stat_t
	if unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
		st.Mode&unix.S_IFMT == unix.S_IFSOCK && st.Dev == l.dev && st.Ino == l.ino {
		unix.Unlinkat(int(dir.Fd()), base, 0)
	}
	return err
}

// Addr names the socket by the path it was asked for.
func (l *listener) Addr() net.Addr {
	return &net.UnixAddr{Name: filepath.Join(l.root.Dir, l.rel), Net: "unix"}
}

// Roots is a set of roots; each path goes to the root it lies beneath
// (the deepest one).
type Roots struct {
	roots []*Root
}

var _ Host = (*Roots)(nil)

// OpenRoots opens each directory as a root; duplicates are opened once.
func OpenRoots(dirs ...string) (*Roots, error) {
	rs := &Roots{}
	for _, d := range dirs {
		if slices.ContainsFunc(rs.roots, func(r *Root) bool { return r.Dir == filepath.Clean(d) }) {
			continue
		}
		r, err := OpenRoot(d)
		if err != nil {
			rs.Close()
			return nil, err
		}
		rs.roots = append(rs.roots, r)
	}
	return rs, nil
}

// Close releases every root.
func (rs *Roots) Close() error {
	for _, r := range rs.roots {
		r.Close()
	}
	rs.roots = nil
	return nil
}

// Dirs lists the roots' directories.
func (rs *Roots) Dirs() []string {
	var out []string
	for _, r := range rs.roots {
		out = append(out, r.Dir)
	}
	return out
}

// For returns the root name lies beneath.
func (rs *Roots) For(name string) (*Root, error) {
	if err := inventory.CheckPath(name); err != nil {
		return nil, err
	}
	var best *Root
	for _, r := range rs.roots {
		if strings.HasPrefix(name, r.Dir+"/") && (best == nil || len(r.Dir) > len(best.Dir)) {
			best = r
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%q: %w (%s)", name, ErrOutside, strings.Join(rs.Dirs(), ", "))
	}
	return best, nil
}

// OpenFile opens name beneath its root.
func (rs *Roots) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	r, err := rs.For(name)
	if err != nil {
		return nil, err
	}
	return r.OpenFile(name, flag, perm)
}

// DialUnix connects to a unix socket beneath its root.
func (rs *Roots) DialUnix(ctx context.Context, name string) (net.Conn, error) {
	r, err := rs.For(name)
	if err != nil {
		return nil, err
	}
	return r.DialUnix(ctx, name)
}

// ListenUnix creates a unix socket beneath its root.
func (rs *Roots) ListenUnix(name string) (net.Listener, error) {
	r, err := rs.For(name)
	if err != nil {
		return nil, err
	}
	return r.ListenUnix(name)
}

// Unconfined opens any path: for the offline CLI, whose user names the
// files, and for tests. The daemon never uses it.
type Unconfined struct{}

var _ Host = Unconfined{}

// OpenFile is os.OpenFile.
func (Unconfined) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// DialUnix dials the socket.
func (Unconfined) DialUnix(ctx context.Context, name string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", name)
}

// ListenUnix replaces a socket (only a socket) at name and listens there.
func (Unconfined) ListenUnix(name string) (net.Listener, error) {
	if st, err := os.Lstat(name); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s: exists and is not a socket: not replacing it", name)
		}
		os.Remove(name)
	}
	return net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
}

// Or returns h, or Unconfined when h is nil.
func Or(h Host) Host {
	if h == nil {
		return Unconfined{}
	}
	return h
}

// WriteFileAtomic replaces name with data: written to a temporary file
// beside it (mode 0600), synced, then renamed over it, so a reader or a
// crash sees the old file or the new one, never a part. For the
// daemon's own state files, not for paths a tenant names.
func WriteFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
