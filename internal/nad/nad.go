package nad

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"

	"secaas/internal/capture"
	"secaas/internal/detect"
	"secaas/internal/feature"
)

// Stats counts what a run saw.
type Stats struct {
	Packets, Decoded, NotIP, Malformed int
}

// Each feeds every packet of r to fn (decoded into a reused Meta) and
// counts what it saw. Packets that are not IP or are malformed are counted
// and skipped; a malformed file ends the run with its error.
func Each(r capture.Reader, fn func(ts int64, m *capture.Meta)) (Stats, error) {
	var st Stats
	var m capture.Meta
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		st.Packets++
		switch err := capture.Decode(p.LinkType, p.Data, &m); {
		case err == nil:
			st.Decoded++
			fn(p.Time, &m)
		case errors.Is(err, capture.ErrNotIP):
			st.NotIP++
		default:
			st.Malformed++
		}
	}
}

// OpenFile opens a pcap or pcapng file.
func OpenFile(path string) (capture.Reader, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	r, err := capture.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, f, nil
}

// TopDestinations returns the n most frequent destination addresses of a
// capture: the servers worth monitoring when none is named.
func TopDestinations(path string, n int) ([]netip.Addr, error) {
	r, c, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	count := map[netip.Addr]int{}
	if _, err := Each(r, func(_ int64, m *capture.Meta) { count[m.Dst]++ }); err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(count))
	for a := range count {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool {
		if count[addrs[i]] != count[addrs[j]] {
			return count[addrs[i]] > count[addrs[j]]
		}
		return addrs[i].Less(addrs[j])
	})
	return addrs[:min(n, len(addrs))], nil
}

// Result is one window of one server with the detectors' verdicts.
type Result struct {
	Window   feature.Window
	Verdicts map[string]detect.Verdict // by detector name
}

// Monitor is the pipeline of one monitored server, the same offline (nad
// detect and eval, the lab, the benchmark) and live (the node agent):
// packets -> feature windows -> every detector. It is not safe for
// concurrent use.
type Monitor struct {
	ext   *feature.Extractor
	names []string
	dets  []detect.Detector
}

// NewMonitor builds the pipeline of server: the detectors registered as
// names (package detect), each made with p, judge every whole window, and
// fn gets each window with their verdicts. Windows cut short by the end of
// a capture (Flush) are not judged: they are not comparable.
func NewMonitor(server netip.Addr, fc feature.Config, names []string, p detect.Params, fn func(Result)) (*Monitor, error) {
	m := &Monitor{names: names}
	if p.Window == 0 {
		p.Window = fc.Window
	}
	for _, n := range names {
		d, err := detect.New(n, p)
		if err != nil {
			return nil, err
		}
		m.dets = append(m.dets, d)
	}
	m.ext = feature.NewExtractor(server, fc, func(w *feature.Window) {
		if w.Partial {
			return
		}
		res := Result{Window: *w, Verdicts: make(map[string]detect.Verdict, len(m.dets))}
		for i, d := range m.dets {
			res.Verdicts[m.names[i]] = d.Observe(w)
		}
		fn(res)
	})
	return m, nil
}

// Add feeds one decoded packet.
func (m *Monitor) Add(ts int64, meta *capture.Meta) { m.ext.Add(ts, meta) }

// Tick closes the windows that ended before now (ns), so that a quiet
// server's windows are judged on time.
func (m *Monitor) Tick(now int64) { m.ext.Tick(now) }

// Flush closes the open window (the end of a capture).
func (m *Monitor) Flush() { m.ext.Flush() }

// Options configure Run.
type Options struct {
	Servers   []netip.Addr
	Features  feature.Config
	Detectors []string      // registered names (detect.Names)
	Params    detect.Params // for every detector
}

// Run extracts windows for every server of o from r and judges each with
// the configured detectors, calling fn per window in time order per server.
func Run(r capture.Reader, o Options, fn func(Result)) (Stats, error) {
	servers := map[netip.Addr]*Monitor{}
	for _, a := range o.Servers {
		m, err := NewMonitor(a, o.Features, o.Detectors, o.Params, fn)
		if err != nil {
			return Stats{}, err
		}
		servers[a.Unmap()] = m
	}
	st, err := Each(r, func(ts int64, m *capture.Meta) {
		if s, ok := servers[m.Dst]; ok {
			s.Add(ts, m)
		} else if s, ok := servers[m.Src]; ok {
			s.Add(ts, m)
		}
	})
	for _, s := range servers {
		s.Flush()
	}
	return st, err
}

// Windows returns every whole window of server in the capture at path, in
// time order, unjudged (for detectors that fit before they judge).
func Windows(path string, server netip.Addr, fc feature.Config) ([]feature.Window, Stats, error) {
	r, c, err := OpenFile(path)
	if err != nil {
		return nil, Stats{}, err
	}
	defer c.Close()
	var ws []feature.Window
	ext := feature.NewExtractor(server, fc, func(w *feature.Window) {
		if !w.Partial {
			ws = append(ws, *w)
		}
	})
	server = server.Unmap()
	st, err := Each(r, func(ts int64, m *capture.Meta) {
		if m.Dst == server || m.Src == server {
			ext.Add(ts, m)
		}
	})
	ext.Flush()
	return ws, st, err
}
