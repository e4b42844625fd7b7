package hyperav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"secaas/internal/av"
	"secaas/internal/disk"
	"secaas/internal/hostpath"
	"secaas/internal/nbd"
	"secaas/internal/qmp"
)

// ServiceConfig is HyperAV for one VM disk.
type ServiceConfig struct {
	Mode      string // bitmap or front
	Disk      string // image path
	QMP, Node string // bitmap mode
	Device    string // bitmap mode: the disk's qdev id, to zero quarantined sectors through it
	Socket    string // front mode: where the disk is served (export "disk")
	Transport string // front mode: "nbd" (default) or "vhost-user"
	Cache     string // front mode: "writeback" (default: the host's page cache) or "none" (O_DIRECT)
	Paths     []string
	Every     time.Duration
	Partition int
	Dir       string // state, quarantine and sockets of this VM
	AV        *av.Scanner
	// Host opens Disk, dials QMP and creates Socket (default: anywhere,
	// for the offline CLI; the daemon confines them to its host roots).
	Host hostpath.Host
}

// Event kinds a Service emits.
const (
	EventInfected = "av.infected" // ScanResult: a file became INFECTED
	EventCleaned  = "av.cleaned"  // ScanResult: an INFECTED file is CLEAN again
	EventIsolated = "av.isolated" // Isolation
	EventReport   = "av.report"   // *Status, every round
	EventError    = "av.error"    // string, once per distinct error
)

// Status is the state of a VM disk for the API.
type Status struct {
	At       time.Time             `json:"at"`
	Mode     string                `json:"mode"`
	Chunks   map[string]int        `json:"chunks"` // CLEAN / WRITTEN / INFECTED
	Infected []Range               `json:"infected_ranges"`
	Files    map[string]FileRecord `json:"files"`
	Epochs   int                   `json:"epochs"`
}

// Isolation is what Isolate did.
type Isolation struct {
	Path       string  `json:"path"`
	Ranges     []Range `json:"ranges"`
	Mode       string  `json:"mode"`                 // front: reads return zeros; bitmap: quarantined and zeroed
	Quarantine string  `json:"quarantine,omitempty"` // where the bytes were copied first
}

// Service runs HyperAV rounds for one VM disk.
type Service struct {
	cfg     ServiceConfig
	emit    func(kind string, v any)
	mu      sync.Mutex // one round or request at a time
	state   *State
	front   *Front
	qmp     *qmp.Client
	tracker *BitmapTracker
	epochs  int
	lastErr string
	verdict map[string]string
	subMu   sync.Mutex
	subs    map[int]func(kind string, v any)
	nextSub int
}

// Subscribe adds a listener of the service's alarms (infected, cleaned,
// isolated); the returned function removes it.
func (s *Service) Subscribe(f func(kind string, v any)) (cancel func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if s.subs == nil {
		s.subs = map[int]func(string, any){}
	}
	s.nextSub++
	id := s.nextSub
	s.subs[id] = f
	return func() {
		s.subMu.Lock()
		delete(s.subs, id)
		s.subMu.Unlock()
	}
}

// alarm emits an alarm to the control plane and to the subscribers.
func (s *Service) alarm(kind string, v any) {
	s.emit(kind, v)
	s.subMu.Lock()
	subs := make([]func(string, any), 0, len(s.subs))
	for _, f := range s.subs {
		subs = append(subs, f)
	}
	s.subMu.Unlock()
	for _, f := range subs {
		f(kind, v)
	}
}

// NewService prepares a service; Run starts it.
func NewService(cfg ServiceConfig, emit func(string, any)) (*Service, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	cfg.Host = hostpath.Or(cfg.Host)
	f, err := cfg.Host.OpenFile(cfg.Disk, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	img, err := disk.OpenFile(f)
	if err != nil {
		return nil, err
	}
	size, format := img.Size(), img.Format()
	img.Close()
	if cfg.Mode == "front" && format != "raw" {
		return nil, fmt.Errorf("front mode serves raw images; %s is %s (qemu-img convert -O raw)", cfg.Disk, format)
	}
	st, err := LoadState(filepath.Join(cfg.Dir, "sectors.state"), size, DefaultGranularity)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, emit: emit, state: st, verdict: map[string]string{}}
	for p, rec := range st.Files() {
		s.verdict[p] = rec.Verdict
	}
	if cfg.Mode == "front" {
		o := FrontOptions{Direct: cfg.Cache == "none", Host: cfg.Host}
		if cfg.Transport == "vhost-user" {
			s.front, err = StartVhostFront(cfg.Disk, cfg.Socket, st, o)
		} else {
			s.front, err = StartFront(cfg.Disk, cfg.Socket, "disk", st, o)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Run does a round every interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	defer s.close()
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	for {
		s.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.front != nil {
		s.front.Close()
	}
	if s.qmp != nil {
		s.qmp.Close()
	}
	s.state.Save()
}

func (s *Service) fail(err error) {
	if msg := err.Error(); msg != s.lastErr {
		s.lastErr = msg
		s.emit(EventError, msg)
	}
}

// reader returns the disk as the scanner should read it, after taking in
// the writes since the last round (bitmap mode: one epoch).
func (s *Service) reader(ctx context.Context) (io.ReaderAt, func(), error) {
	if s.front != nil {
		return s.front.Image, func() {}, nil
	}
	if s.tracker == nil {
		conn, err := s.cfg.Host.DialUnix(ctx, s.cfg.QMP)
		if err != nil {
			return nil, nil, fmt.Errorf("qmp: %w", err)
		}
		c, err := qmp.NewClient(ctx, conn)
		if err != nil {
			return nil, nil, err
		}
		tr, lost, err := StartBitmapTracker(ctx, c, s.cfg.Node, "secaas-dirty", s.cfg.Dir, s.state.Tracking)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		if lost {
			s.state.MarkAllWritten()
			s.emit(EventError, "the dirty bitmap was lost or inconsistent (QEMU crashed?): every sector counts as written")
		}
		s.state.Tracking = true
		s.qmp, s.tracker = c, tr
		if err := s.state.Save(); err != nil { // the flag must outlive a crash
			return nil, nil, err
		}
	}
	rs, err := s.tracker.Epoch(ctx)
	if err != nil {
		s.qmp.Close()
		s.qmp, s.tracker = nil, nil // the VM may have restarted: reconnect next time
		return nil, nil, err
	}
	s.epochs++
	for _, r := range rs {
		s.state.MarkWritten(r.Start, r.Len)
	}
	rd, done, err := s.tracker.Reader(ctx)
	if err != nil {
		return nil, nil, err
	}
	return rd, done, nil
}

// Round scans the watched paths.
func (s *Service) Round(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rd, done, err := s.reader(ctx)
	if err != nil {
		s.fail(err)
		return
	}
	defer done()
	for _, p := range s.cfg.Paths {
		if _, err := s.scanLocked(ctx, rd, p); err != nil {
			s.fail(fmt.Errorf("%s: %w", p, err))
		}
	}
	s.emit(EventReport, s.statusLocked())
}

func (s *Service) scanLocked(ctx context.Context, rd io.ReaderAt, path string) (*ScanResult, error) {
	sc := &Scanner{Disk: rd, Partition: s.cfg.Partition, State: s.state, AV: s.cfg.AV}
	r, err := sc.ScanFile(ctx, path)
	if err != nil {
		return nil, err
	}
	prev := s.verdict[path]
	s.verdict[path] = r.Verdict
	switch {
	case r.Verdict == string(av.Infected) && prev != r.Verdict:
		s.alarm(EventInfected, *r)
	case r.Verdict == string(av.Clean) && prev == string(av.Infected):
		s.alarm(EventCleaned, *r)
	}
	return r, nil
}

// Scan scans one file now (on demand: a tenant's request, the guest tool).
func (s *Service) Scan(ctx context.Context, path string) (r *ScanResult, err error) {
	err = s.withDisk(ctx, func(rd io.ReaderAt) error {
		r, err = s.scanLocked(ctx, rd, path)
		return err
	})
	return r, err
}

// withDisk runs f on the disk's current contents, one request at a time.
func (s *Service) withDisk(ctx context.Context, f func(rd io.ReaderAt) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rd, done, err := s.reader(ctx)
	if err != nil {
		return err
	}
	defer done()
	return f(rd)
}

// Status reports the disk's sector state and file verdicts.
func (s *Service) Status() *Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Service) statusLocked() *Status {
	return &Status{At: time.Now().UTC(), Mode: s.cfg.Mode, Chunks: s.state.Counts(),
		Infected: s.state.InfectedRanges(), Files: s.state.Files(), Epochs: s.epochs}
}

// Isolate isolates a file's sectors whatever its verdict. Front mode: its
// chunks become INFECTED, and the guest reads zeros there. Bitmap mode has
// no way to hide sectors from a running guest: the bytes are copied to the
// quarantine directory first, then overwritten with zeros through a
// writable NBD export of the disk (destructive).
func (s *Service) Isolate(ctx context.Context, path string) (iso *Isolation, err error) {
	err = s.withDisk(ctx, func(rd io.ReaderAt) error {
		iso, err = s.isolateLocked(ctx, rd, path)
		return err
	})
	return iso, err
}

func (s *Service) isolateLocked(ctx context.Context, rd io.ReaderAt, path string) (*Isolation, error) {
	v, err := OpenVolume(rd, s.state.DiskSize, s.cfg.Partition)
	if err != nil {
		return nil, err
	}
	m, ino, err := v.Locate(path)
	if err != nil {
		return nil, err
	}
	if len(m.Ranges) == 0 {
		return nil, fmt.Errorf("%s has no sectors of its own (inline data or empty)", path)
	}
	iso := &Isolation{Path: path, Ranges: m.Ranges, Mode: s.cfg.Mode}
	if s.front == nil {
		data, err := v.ReadFile(ino)
		if err != nil {
			return nil, err
		}
		qdir := filepath.Join(s.cfg.Dir, "quarantine")
		if err := os.MkdirAll(qdir, 0o700); err != nil {
			return nil, err
		}
		iso.Quarantine = filepath.Join(qdir, fmt.Sprintf("%d-%s", time.Now().UnixNano(), filepath.Base(path)))
		if err := os.WriteFile(iso.Quarantine, data, 0o600); err != nil {
			return nil, err
		}
		if err := s.zeroThroughQEMU(ctx, m.Ranges); err != nil {
			return nil, fmt.Errorf("quarantined to %s, but zeroing failed: %w", iso.Quarantine, err)
		}
	}
	s.state.mu.Lock()
	for _, r := range m.Ranges {
		s.state.each(r, func(c int64) {
			s.state.infected.Set(c)
			s.state.written.Clear(c)
		})
	}
	rec := s.state.files[path]
	rec.Isolated = true
	s.state.files[path] = rec
	s.state.mu.Unlock()
	if err := s.state.Save(); err != nil {
		return iso, err
	}
	s.alarm(EventIsolated, *iso)
	return iso, nil
}

// zeroThroughQEMU overwrites ranges with zeros through QEMU (so that its
// caches and the guest's view agree): through the VM's own disk device
// when its qdev id is known (HMP qemu-io), else through a writable NBD
// export (which QEMU refuses unless the device shares writes: share-rw=on).
func (s *Service) zeroThroughQEMU(ctx context.Context, rs []Range) error {
	if s.tracker == nil {
		return errors.New("no QMP connection")
	}
	q := s.tracker.QMP
	if s.cfg.Device != "" {
		hmp := func(cmd string) error {
			var out string
			if err := q.Execute(ctx, "human-monitor-command", map[string]any{"command-line": fmt.Sprintf("qemu-io -d %s %q", s.cfg.Device, cmd)}, &out); err != nil {
				return err
			}
			if strings.TrimSpace(out) != "" && !strings.Contains(out, "wrote") {
				return fmt.Errorf("qemu-io %s: %s", cmd, strings.TrimSpace(out))
			}
			return nil
		}
		for _, r := range rs {
			n := (r.Len + 511) &^ 511 // whole sectors: the rest of the last one is the file's slack
			if err := hmp(fmt.Sprintf("write -z %d %d", r.Start, n)); err != nil {
				return err
			}
		}
		return hmp("flush")
	}
	id := "secaas-quarantine"
	q.Execute(ctx, "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
	if err := q.Execute(ctx, "block-export-add", map[string]any{"type": "nbd", "id": id, "node-name": s.cfg.Node, "name": id, "writable": true}, nil); err != nil {
		return err
	}
	defer q.Execute(context.Background(), "block-export-del", map[string]any{"id": id, "mode": "hard"}, nil)
	c, err := nbd.Dial(ctx, s.tracker.Socket, id)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, r := range rs {
		if _, err := c.WriteAt(make([]byte, r.Len), r.Start); err != nil {
			return err
		}
	}
	return c.Flush()
}

// SortedPaths is a helper for stable output.
func SortedPaths(m map[string]FileRecord) []string {
	var out []string
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
