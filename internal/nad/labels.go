package nad

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Attack types of the traffic lab and of labelled captures.
const (
	PortScan = "portscan" // nmap -sS, scale = ports probed
	SYNFlood = "synflood" // hping3 -S from random sources, scale = packets
	UDPFlood = "udpflood" // hping3 --udp, scale = packets
	// Small and slow attacks (the varied lab):
	SlowScan   = "slowscan"   // nmap -sS -T2 (0.4 s between probes), scale = ports
	SlowSYN    = "slowsyn"    // hping3 -S at 20 packets/s, scale = packets
	BruteForce = "bruteforce" // SSH password guessing, a connection per guess, scale = guesses
	// Replay types are "replay:" + the capture's file name; scale = the
	// packets replayed (tcpreplay of a real capture, readdressed).
	Replay = "replay:"
)

// PaperScales are the attack scales of the 2018 paper's Table 5.
var PaperScales = map[string][]int{PortScan: {120, 240, 600}, SYNFlood: {600, 1800, 3000}, UDPFlood: {600, 1200, 1800}}

// SmallScales are the varied lab's small and slow attacks: an nmap -T2
// scan of 100 ports (about 40 s), a 20 packets/s SYN flood of 300 packets
// (15 s), 60 SSH password guesses (about 20 s).
var SmallScales = map[string][]int{SlowScan: {100}, SlowSYN: {300}, BruteForce: {60}}

// Kinds are the lab's attack types in plan order.
var Kinds = []string{PortScan, SYNFlood, UDPFlood, SlowScan, SlowSYN, BruteForce}

// Attack is one planned attack and, after the run, when it really ran.
type Attack struct {
	Type   string        `json:"type"`
	Scale  int           `json:"scale"`
	At     time.Duration `json:"at"` // offset from the start of the run
	Start  time.Time     `json:"start"`
	End    time.Time     `json:"end"`
	Source string        `json:"source"`
	Tool   string        `json:"tool"`
	File   string        `json:"file,omitempty"` // the capture a replay sends
	Err    string        `json:"error,omitempty"`
}

// Labels is the ground truth a run writes beside its capture.
type Labels struct {
	Seed    uint64    `json:"seed"`
	Server  string    `json:"server"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Attacks []Attack  `json:"attacks"`
}

// ReadLabels loads a labels file: the JSON the traffic lab writes, or a
// CSV whose header's first three columns are start_unix,end_unix,kind
// (more columns ignored), one episode per row.
func ReadLabels(path string) (*Labels, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	l, err := ParseLabels(b)
	if err != nil {
		return nil, fmt.Errorf("labels %s: %w", path, err)
	}
	return l, nil
}

// maxEpisodes bounds a labels file.
const maxEpisodes = 1 << 20

// ParseLabels parses the bytes of a labels file (JSON or CSV).
func ParseLabels(b []byte) (*Labels, error) {
	t := bytes.TrimLeft(b, " \t\r\n\xef\xbb\xbf")
	if len(t) > 0 && t[0] == '{' {
		var l Labels
		if err := json.Unmarshal(t, &l); err != nil {
			return nil, err
		}
		for i, a := range l.Attacks {
			if a.End.Before(a.Start) {
				return nil, fmt.Errorf("attack %d ends before it starts", i)
			}
		}
		return &l, nil
	}
	r := csv.NewReader(bytes.NewReader(t))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	want := []string{"start_unix", "end_unix", "kind"}
	if len(head) < 3 {
		return nil, fmt.Errorf("csv header %q: want its first columns to be %s", strings.Join(head, ","), strings.Join(want, ","))
	}
	for i, w := range want {
		if strings.TrimSpace(strings.ToLower(head[i])) != w {
			return nil, fmt.Errorf("csv header column %d is %q, want %q", i+1, head[i], w)
		}
	}
	l := &Labels{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		if len(rec) < 3 {
			return nil, fmt.Errorf("csv line %d: %d columns, want at least 3", line, len(rec))
		}
		start, err1 := parseUnix(rec[0])
		end, err2 := parseUnix(rec[1])
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("csv line %d: %w", line, err)
		}
		if end.Before(start) {
			return nil, fmt.Errorf("csv line %d: ends before it starts", line)
		}
		kind := strings.TrimSpace(rec[2])
		if kind == "" {
			return nil, fmt.Errorf("csv line %d: empty kind", line)
		}
		if len(l.Attacks) == maxEpisodes {
			return nil, fmt.Errorf("csv: more than %d episodes", maxEpisodes)
		}
		l.Attacks = append(l.Attacks, Attack{Type: kind, Start: start, End: end})
		if l.Start.IsZero() || start.Before(l.Start) {
			l.Start = start
		}
		l.End = maxTime(l.End, end)
	}
	return l, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// parseUnix reads seconds since the epoch, with a fraction.
func parseUnix(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("%q is not a unix time in seconds", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// PlanAttacks spreads attacks of the given types and scales, perSetting of
// each, plus the extra ones (replays), at random non-overlapping times in
// [from, to) at least gap apart.
func PlanAttacks(r *rand.Rand, scales map[string][]int, perSetting int, from, to, gap time.Duration, extra ...Attack) ([]Attack, error) {
	as := append([]Attack(nil), extra...)
	for _, typ := range Kinds {
		for _, sc := range scales[typ] {
			for i := 0; i < perSetting; i++ {
				as = append(as, Attack{Type: typ, Scale: sc})
			}
		}
	}
	slots := int((to - from) / gap)
	if slots < len(as) {
		return nil, fmt.Errorf("plan: %d attacks do not fit in %s at %s apart (%d slots)", len(as), to-from, gap, slots)
	}
	perm := r.Perm(slots)[:len(as)]
	sort.Ints(perm)
	r.Shuffle(len(as), func(i, j int) { as[i], as[j] = as[j], as[i] })
	for i := range as {
		as[i].At = from + time.Duration(perm[i])*gap + time.Duration(r.Int64N(int64(gap/4)))
	}
	return as, nil
}
