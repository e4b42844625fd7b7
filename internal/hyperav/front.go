package hyperav

import (
	"fmt"
	"log/slog"
	"net"
	"os"

	"secaas/internal/nbd"
)

// Front is front mode: secaas serves the VM's disk image over NBD and QEMU
// attaches it (-blockdev driver=nbd). Every write is recorded in the sector
// state as it happens; reads of INFECTED chunks return zeros (isolation);
// FLUSH and FUA reach the image's stable storage before QEMU is answered.
type Front struct {
	Image  *os.File
	State  *State
	Server *nbd.Server
	ln     net.Listener
}

// StartFront serves a raw image on a unix socket as export name.
func StartFront(image, socket, export string, st *State, log *slog.Logger) (*Front, error) {
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("front: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if info.Size() != st.DiskSize {
		f.Close()
		return nil, fmt.Errorf("front: image has %d bytes, state is for %d", info.Size(), st.DiskSize)
	}
	os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("front: %w", err)
	}
	fr := &Front{Image: f, State: st, ln: ln}
	fr.Server = &nbd.Server{Export: export, Size: info.Size(), Backend: f, Log: log,
		OnWrite: st.MarkWritten,
		Zero: func(off, n int64) []nbd.Extent {
			var out []nbd.Extent
			for _, r := range st.Isolated(off, n) {
				out = append(out, nbd.Extent{Offset: r.Start, Length: r.Len})
			}
			return out
		}}
	go fr.Server.Serve(ln)
	return fr, nil
}

// Close stops serving (QEMU's disk goes away: stop the VM first).
func (f *Front) Close() error {
	f.ln.Close()
	f.Server.CloseConns()
	return f.Image.Close()
}
