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

// Options configure Run.
type Options struct {
	Servers   []netip.Addr
	Features  feature.Config
	Detectors map[string]detect.Config // name -> config; run on the 8 stability features
}

// Run extracts windows for every server of o from r and judges each with
// the configured detectors, calling fn per window in time order per server.
func Run(r capture.Reader, o Options, fn func(Result)) (Stats, error) {
	type server struct {
		ext  *feature.Extractor
		dets map[string]*detect.Stability
	}
	servers := map[netip.Addr]*server{}
	for _, a := range o.Servers {
		s := &server{dets: map[string]*detect.Stability{}}
		for name, cfg := range o.Detectors {
			s.dets[name] = detect.NewStability(feature.StabilityNames[:], cfg)
		}
		s.ext = feature.NewExtractor(a, o.Features, func(w *feature.Window) {
			if w.Partial {
				return // cut short by the end of the capture: not comparable, not judged
			}
			res := Result{Window: *w, Verdicts: map[string]detect.Verdict{}}
			for name, d := range s.dets {
				res.Verdicts[name] = d.Observe(w.Stability[:])
			}
			fn(res)
		})
		servers[a.Unmap()] = s
	}
	st, err := Each(r, func(ts int64, m *capture.Meta) {
		if s, ok := servers[m.Dst]; ok {
			s.ext.Add(ts, m)
		} else if s, ok := servers[m.Src]; ok {
			s.ext.Add(ts, m)
		}
	})
	for _, s := range servers {
		s.ext.Flush()
	}
	return st, err
}
