package hyperav

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"sync"
	"time"

	"secaas/internal/hostpath"
)

// GuestRequest is a request of the guest tool (cmd/secaas-guest).
type GuestRequest struct {
	Op      string `json:"op"` // scan or isolate
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Extents []struct {
		Logical, Physical, Length uint64
	} `json:"extents,omitempty"` // the guest's FIEMAP: a hint only
}

// maxGuestLine bounds one request from the guest.
const maxGuestLine = 1 << 20

// ServeGuestPort answers the guest tool on a virtio-serial port (the unix
// socket QEMU listens on for it), reconnecting until ctx ends, and pushes
// the service's alarms to the guest ({"event": "av.infected", ...} lines). The guest is
// untrusted: requests are bounded, the path is looked up on the host side
// (its FIEMAP extents are only a hint), and a bad request gets an error
// reply, not a crash.
func ServeGuestPort(ctx context.Context, host hostpath.Host, socket string, svc *Service) {
	host = hostpath.Or(host)
	for ctx.Err() == nil {
		conn, err := host.DialUnix(ctx, socket)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		serveGuest(ctx, conn, svc)
		stop()
		conn.Close()
	}
}

func serveGuest(ctx context.Context, conn net.Conn, svc *Service) {
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), maxGuestLine)
	// Replies and pushed alarms share the port: one line at a time.
	var mu sync.Mutex
	enc := lockedEncoder{mu: &mu, enc: json.NewEncoder(conn)}
	defer svc.Subscribe(func(kind string, v any) {
		msg := map[string]any{"event": kind}
		switch x := v.(type) {
		case ScanResult:
			msg["path"], msg["verdict"], msg["signatures"] = x.Path, x.Verdict, x.Engines.Signatures()
		case Isolation:
			msg["path"], msg["isolated"] = x.Path, true
		}
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		enc.Encode(msg)
	})()
	for sc.Scan() {
		var req GuestRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil || req.Path == "" || req.Path[0] != '/' {
			enc.Encode(map[string]string{"error": "bad request"})
			continue
		}
		switch req.Op {
		case "scan":
			r, err := svc.Scan(ctx, req.Path)
			if err != nil {
				enc.Encode(map[string]string{"path": req.Path, "error": err.Error()})
				continue
			}
			enc.Encode(map[string]any{"path": r.Path, "verdict": r.Verdict, "cached": r.Cached, "signatures": r.Engines.Signatures()})
		case "isolate":
			iso, err := svc.Isolate(ctx, req.Path)
			if err != nil {
				enc.Encode(map[string]string{"path": req.Path, "error": err.Error()})
				continue
			}
			enc.Encode(map[string]any{"path": iso.Path, "isolated": true, "ranges": iso.Ranges})
		default:
			enc.Encode(map[string]string{"error": "unknown op " + req.Op})
		}
	}
}

type lockedEncoder struct {
	mu  *sync.Mutex
	enc *json.Encoder
}

func (l lockedEncoder) Encode(v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(v)
}
