package hyperav

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"secaas/internal/hostpath"
	"secaas/internal/nbd"
	"secaas/internal/vhostuser"

	"golang.org/x/sys/unix"
)

// Front is front mode: secaas serves the VM's disk image itself, and QEMU
// attaches it either over NBD (-blockdev driver=nbd) or as a vhost-user-blk
// device (the guest's queue is served from its shared RAM: no socket round
// trip per request). Every write is recorded in the sector state as it
// happens; reads of INFECTED chunks return zeros (isolation); FLUSH (and
// NBD's FUA) reach the image's stable storage before QEMU is answered.
type Front struct {
	Image  *os.File // opened without O_DIRECT (what scans read)
	direct *os.File // with FrontOptions.Direct: the same image with O_DIRECT
	State  *State
	Server *nbd.Server            // NBD transport
	Vhost  *vhostuser.BlockServer // vhost-user transport
	ln     net.Listener
}

// FrontOptions are a front's settings beyond the image and socket.
type FrontOptions struct {
	// Direct opens the image with O_DIRECT: the host's page cache is
	// bypassed (QEMU's cache=none, what clouds usually give VM disks).
	// A request O_DIRECT refuses (buffers or offsets not aligned as the
	// host wants) goes through the image opened without it (see
	// vhostuser.File). FLUSH still syncs the image.
	Direct bool
	// Poll (vhost-user) is how long the server watches the ring after a
	// request before it sleeps until the guest kicks
	// (vhostuser.BlockServer.Poll; 0: never).
	Poll time.Duration
	Log  *slog.Logger
	// Host opens the image and creates the socket (default: anywhere; the
	// daemon confines both to its host roots). Only a socket this front
	// created is ever removed.
	Host hostpath.Host
}

// openFront opens a raw image whose size matches the state and listens on
// the unix socket.
func openFront(image, socket string, st *State, o FrontOptions) (*Front, net.Listener, error) {
	host := hostpath.Or(o.Host)
	f, err := host.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("front: %w", err)
	}
	fr := &Front{Image: f, State: st}
	fail := func(err error) (*Front, net.Listener, error) {
		fr.closeFiles()
		return nil, nil, fmt.Errorf("front: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !info.Mode().IsRegular() {
		return fail(fmt.Errorf("%s is not a regular file", image))
	}
	if info.Size() != st.DiskSize {
		return fail(fmt.Errorf("image has %d bytes, state is for %d", info.Size(), st.DiskSize))
	}
	if o.Direct {
		if fr.direct, err = host.OpenFile(image, os.O_RDWR|unix.O_DIRECT, 0); err != nil {
			return fail(fmt.Errorf("cache none (O_DIRECT): %w", err))
		}
	}
	ln, err := host.ListenUnix(socket)
	if err != nil {
		return fail(err)
	}
	fr.ln = ln
	return fr, ln, nil
}

// backend is what the transports read and write.
func (f *Front) backend() vhostuser.File {
	if f.direct != nil {
		return vhostuser.File{File: f.direct, Buffered: f.Image}
	}
	return vhostuser.File{File: f.Image}
}

func (f *Front) closeFiles() error {
	if f.direct != nil {
		f.direct.Close()
	}
	return f.Image.Close()
}

// isolated lists the parts of [off, off+n) that must read as zeros, in a
// transport's extent type.
func isolated[E any](st *State, off, n int64, extent func(start, length int64) E) []E {
	var out []E
	for _, r := range st.Isolated(off, n) {
		out = append(out, extent(r.Start, r.Len))
	}
	return out
}

// StartFront serves a raw image on a unix socket as NBD export name.
func StartFront(image, socket, export string, st *State, o FrontOptions) (*Front, error) {
	fr, ln, err := openFront(image, socket, st, o)
	if err != nil {
		return nil, err
	}
	fr.Server = &nbd.Server{Export: export, Size: st.DiskSize, Backend: fr.backend(), Log: o.Log,
		OnWrite: st.MarkWritten,
		Zero: func(off, n int64) []nbd.Extent {
			return isolated(st, off, n, func(s, l int64) nbd.Extent { return nbd.Extent{Offset: s, Length: l} })
		}}
	go fr.Server.Serve(ln)
	return fr, nil
}

// StartVhostFront serves a raw image as a vhost-user-blk back-end on a unix
// socket (QEMU: -chardev socket,path=SOCKET -device vhost-user-blk-pci;
// the guest's RAM must be shared, e.g. memory-backend-file,share=on).
func StartVhostFront(image, socket string, st *State, o FrontOptions) (*Front, error) {
	fr, ln, err := openFront(image, socket, st, o)
	if err != nil {
		return nil, err
	}
	fr.Vhost = &vhostuser.BlockServer{Size: st.DiskSize, Backend: fr.backend(), Serial: "secaas-front", Log: o.Log, Poll: o.Poll,
		OnWrite: st.MarkWritten,
		Zero: func(off, n int64) []vhostuser.Extent {
			return isolated(st, off, n, func(s, l int64) vhostuser.Extent { return vhostuser.Extent{Offset: s, Length: l} })
		}}
	go fr.Vhost.Serve(ln)
	return fr, nil
}

// Close stops serving (QEMU's disk goes away: stop the VM first).
func (f *Front) Close() error {
	f.ln.Close()
	if f.Server != nil {
		f.Server.CloseConns()
	}
	if f.Vhost != nil {
		f.Vhost.Close()
	}
	return f.closeFiles()
}
