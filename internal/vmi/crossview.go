package vmi

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"secaas/internal/capture"
	"secaas/internal/linuxkern"
)

// Responses records, from the traffic the host sees on a VM's switch port
// (the mirror anomaly detection reads), which of the VM's ports answer as
// servers: a TCP SYN-ACK sent from the port (only a listening socket makes
// the kernel send one), or a UDP datagram sent from the port back to an
// address and port that sent to it. Cross-viewed with the sockets in the
// VM's memory, a port that answers with no socket that could own it is a
// service something hides: a raw- or packet-socket backdoor, or a socket
// kept out of every process's reach. Safe for concurrent use.
type Responses struct {
	mu     sync.Mutex
	vm     netip.Addr // the VM's address; invalid: any source counts
	answer map[Responder][]int64
	asked  map[askKey]int64 // UDP: (remote addr, remote port, VM port) -> last request
	pruned int64            // when asked was last pruned
}

// Responder is a VM port seen answering.
type Responder struct {
	Proto string     `json:"proto"` // tcp or udp
	Addr  netip.Addr `json:"addr"`
	Port  uint16     `json:"port"`
}

type askKey struct {
	remote netip.Addr
	rport  uint16
	port   uint16
}

// Bounds: a VM answering on more ports, or talking to more peers, drops
// the oldest knowledge rather than grow without end.
const (
	maxResponders   = 4096
	maxAnswerTimes  = 32
	maxAsked        = 1 << 16
	askedRemembered = 30 * time.Second
)

// NewResponses watches for answers from the VM at vm (any address if vm is
// not valid).
func NewResponses(vm netip.Addr) *Responses {
	return &Responses{vm: vm, answer: map[Responder][]int64{}, asked: map[askKey]int64{}}
}

// Observe takes one decoded packet seen at t (ns since the epoch).
func (r *Responses) Observe(t int64, m *capture.Meta) {
	if m.SrcPort == 0 && m.DstPort == 0 {
		return
	}
	fromVM := !r.vm.IsValid() || m.Src == r.vm
	toVM := !r.vm.IsValid() || m.Dst == r.vm
	r.mu.Lock()
	defer r.mu.Unlock()
	switch m.Proto {
	case capture.ProtoTCP:
		const syn, ack = 0x02, 0x10
		if fromVM && m.TCPFlags&(syn|ack) == syn|ack {
			r.record(Responder{Proto: "tcp", Addr: m.Src, Port: m.SrcPort}, t)
		}
	case capture.ProtoUDP:
		if toVM {
			// Full (a flood of requests from ever new ports): prune at
			// most once a second, and meanwhile take no new requester,
			// so a flood costs no more than a map lookup per packet.
			if len(r.asked) >= maxAsked && t-r.pruned > int64(time.Second) {
				r.prune(t)
				r.pruned = t
			}
			k := askKey{m.Src, m.SrcPort, m.DstPort}
			if _, ok := r.asked[k]; ok || len(r.asked) < maxAsked {
				r.asked[k] = t
			}
		}
		if fromVM {
			if at, ok := r.asked[askKey{m.Dst, m.DstPort, m.SrcPort}]; ok && t-at <= int64(askedRemembered) {
				r.record(Responder{Proto: "udp", Addr: m.Src, Port: m.SrcPort}, t)
			}
		}
	}
}

// Feed observes every packet of a capture until it ends or fails (a live
// capture: until it is closed).
func (r *Responses) Feed(c capture.Reader) {
	var m capture.Meta
	for {
		p, err := c.Next()
		if err != nil {
			return
		}
		if capture.Decode(p.LinkType, p.Data, &m) == nil {
			r.Observe(p.Time, &m)
		}
	}
}

func (r *Responses) record(k Responder, t int64) {
	ts, ok := r.answer[k]
	if !ok && len(r.answer) >= maxResponders {
		return
	}
	if len(ts) == maxAnswerTimes {
		ts = append(ts[:0], ts[1:]...)
	}
	r.answer[k] = append(ts, t)
}

// prune forgets UDP requests older than askedRemembered.
func (r *Responses) prune(now int64) {
	for k, at := range r.asked {
		if now-at > int64(askedRemembered) {
			delete(r.asked, k)
		}
	}
}

// Answering returns the ports that answered both in [at-window, at] and in
// [at, at+window]: serving across the moment at, so that a socket listing
// taken at at must hold their sockets.
func (r *Responses) Answering(at time.Time, window time.Duration) []Responder {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := at.UnixNano()
	var out []Responder
	for k, ts := range r.answer {
		var before, after bool
		for _, x := range ts {
			before = before || x <= t && t-x <= int64(window)
			after = after || x >= t && x-t <= int64(window)
		}
		if before && after {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// UnownedTraffic is a VM port that answered traffic while no socket in the
// VM's memory could have.
type UnownedTraffic struct {
	Responder
	At       time.Time `json:"at"` // the socket listing it was compared with
	Evidence string    `json:"evidence"`
}

// CrossView compares the ports seen answering with the sockets a listing
// taken at at found: a TCP port needs a listening TCP (or MPTCP) socket on
// it, a UDP port a UDP socket bound to it, each on the answering address
// or a wildcard.
func CrossView(socks []linuxkern.Socket, answering []Responder, at time.Time) []UnownedTraffic {
	out := []UnownedTraffic{}
	for _, a := range answering {
		owned := false
		for _, s := range socks {
			if s.LocalPort != a.Port || !addrCovers(s.LocalAddr, a.Addr) {
				continue
			}
			switch a.Proto {
			case "tcp":
				owned = owned || (s.Proto == "tcp" || s.Proto == "mptcp") && s.State == "LISTEN"
			case "udp":
				owned = owned || s.Proto == "udp" || s.Proto == "udplite"
			}
		}
		if !owned {
			what := "sent SYN-ACKs"
			if a.Proto == "udp" {
				what = "answered UDP requests"
			}
			out = append(out, UnownedTraffic{Responder: a, At: at,
				Evidence: fmt.Sprintf("%s:%d %s before and after %s, when no process held a %s socket on it: a raw- or packet-socket service, or a hidden socket",
					a.Addr, a.Port, what, at.UTC().Format(time.RFC3339Nano), a.Proto)})
		}
	}
	return out
}

// addrCovers: a socket bound to local (as decoded from memory) receives
// for addr.
func addrCovers(local string, addr netip.Addr) bool {
	l, err := netip.ParseAddr(local)
	if err != nil {
		return false
	}
	return l.IsUnspecified() || l.Unmap() == addr.Unmap()
}
