package nad

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"
)

// Attack types of the traffic lab and of labelled captures.
const (
	PortScan = "portscan" // nmap -sS, scale = ports probed
	SYNFlood = "synflood" // hping3 -S from random sources, scale = packets
	UDPFlood = "udpflood" // hping3 --udp, scale = packets
	// Replay types are "replay:" + the capture's file name; scale = the
	// packets replayed (tcpreplay of a real capture, readdressed).
	Replay = "replay:"
)

// PaperScales are the attack scales of the 2018 paper's Table 5.
var PaperScales = map[string][]int{PortScan: {120, 240, 600}, SYNFlood: {600, 1800, 3000}, UDPFlood: {600, 1200, 1800}}

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

// ReadLabels loads a labels file.
func ReadLabels(path string) (*Labels, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l Labels
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("labels %s: %w", path, err)
	}
	return &l, nil
}

// PlanAttacks spreads attacks of the given types and scales, perSetting of
// each, plus the extra ones (replays), at random non-overlapping times in
// [from, to) at least gap apart.
func PlanAttacks(r *rand.Rand, scales map[string][]int, perSetting int, from, to, gap time.Duration, extra ...Attack) ([]Attack, error) {
	as := append([]Attack(nil), extra...)
	for _, typ := range []string{PortScan, SYNFlood, UDPFlood} {
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
