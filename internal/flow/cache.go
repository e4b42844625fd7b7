package flow

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"secaas/internal/tenant"
)

// Cache remembers the flows each rule compiled to, with their text, so
// that a compilation through it (Cache.Compile) compiles and renders
// only the rules whose content, priority or perimeters changed, and
// Delta finds what changed by rule instead of by line. With priorities
// kept stable (CompileFrom), adding one rule to a domain of thousands
// compiles one rule. A Cache is not safe for concurrent use.
type Cache struct {
	gen     uint64
	entries map[string]*chunk
	buf     []byte
}

// chunk is one rule's flows and their text; immutable once made.
type chunk struct {
	flows []Flow
	lines []string
	gen   uint64 // the last compilation that used it
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{entries: map[string]*chunk{}} }

// Compile is CompileWith through the cache: rules already compiled at the
// same priority and perimeters reuse their flows. Rules no compilation
// since the previous one used are forgotten.
func (k *Cache) Compile(n *tenant.Net, ports Ports, tun Tunnels, prev Priorities) (*Set, error) {
	k.gen++
	set, err := compileWith(n, ports, tun, prev, k)
	for sig, ch := range k.entries {
		if ch.gen < k.gen-1 { // keep the previous compilation's: a failed apply goes back to it
			delete(k.entries, sig)
		}
	}
	return set, err
}

// ruleChunk returns the flows of rule r of domain tid at priority prio,
// from the cache when it has them.
func (c *compiler) ruleChunk(tid uint32, r *tenant.Rule, content []byte, prio int) *chunk {
	k := c.cache
	var sig []byte
	if k != nil {
		k.buf = binary.BigEndian.AppendUint32(k.buf[:0], tid)
		k.buf = binary.BigEndian.AppendUint32(k.buf, uint32(prio))
		k.buf = binary.BigEndian.AppendUint32(k.buf, r.Perimeters)
		k.buf = append(k.buf, content...)
		sig = k.buf
		if ch, ok := k.entries[string(sig)]; ok {
			ch.gen = k.gen
			return ch
		}
	}
	ch := &chunk{}
	cookie := ruleCookieBase | uint64(tid)<<32 | uint64(prio)
	var acts []Action
	if r.Action == tenant.Pass {
		acts = []Action{set(RegPass, 1)}
	}
	for _, m := range ruleMatches(r) {
		m.setReg(RegTID, tid)
		m.setReg(RegPerim, 0)
		m.RegMasks[RegPerim] = ^r.Perimeters
		if prio < 0 || prio > 65535 {
			c.err = fmt.Errorf("compile: priority %d out of range", prio)
			prio = 0
		}
		f := Flow{Table: TablePerimeter, Priority: uint16(prio), Match: m, Actions: acts, Cookie: cookie}
		ch.flows = append(ch.flows, f)
		ch.lines = append(ch.lines, f.String())
	}
	if k != nil {
		ch.gen = k.gen
		k.entries[string(sig)] = ch
	}
	return ch
}

// ruleSigs returns each rule's appendRuleSig, in one allocation.
func ruleSigs(rules []*tenant.Rule) [][]byte {
	var buf []byte
	ends := make([]int, len(rules))
	for i, r := range rules {
		buf = appendRuleSig(buf, r)
		ends[i] = len(buf)
	}
	sigs := make([][]byte, len(rules))
	start := 0
	for i, end := range ends {
		sigs[i] = buf[start:end:end]
		start = end
	}
	return sigs
}

// appendRuleSig appends a byte string that identifies r's content (not
// its place in the policy).
func appendRuleSig(b []byte, r *tenant.Rule) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(int64(r.Priority)))
	b = append(b, byte(len(r.Action)), r.Proto)
	b = append(b, r.Action...)
	for _, p := range []tenant.PortRange{r.SrcPort, r.DstPort} {
		b = binary.BigEndian.AppendUint16(b, p.Lo)
		b = binary.BigEndian.AppendUint16(b, p.Hi)
	}
	for _, ms := range [][]tenant.MAC{r.SrcMAC, r.DstMAC} {
		b = binary.AppendUvarint(b, uint64(len(ms)))
		for _, m := range ms {
			b = append(b, m[:]...)
		}
	}
	for _, ps := range [][]netip.Prefix{r.SrcIP, r.DstIP} {
		b = binary.AppendUvarint(b, uint64(len(ps)))
		for _, p := range ps {
			a := p.Addr().As16()
			fam := byte(6)
			if p.Addr().Is4() {
				fam = 4
			}
			b = append(append(b, fam, byte(p.Bits())), a[:]...)
		}
	}
	return b
}

// Delta says which lines of old's text to delete and which of new's to
// add to go from old to new: by rule where both came through one Cache
// (a rule's flows are one unit), by line for the rest.
func Delta(old, new *Set) (del, add []string) {
	had := make(map[*chunk]bool, len(old.chunks))
	for _, ch := range old.chunks {
		had[ch] = true
	}
	has := make(map[*chunk]bool, len(new.chunks))
	var addRules, delRules []string
	for _, ch := range new.chunks {
		has[ch] = true
		if !had[ch] {
			addRules = append(addRules, ch.lines...)
		}
	}
	for _, ch := range old.chunks {
		if !has[ch] {
			delRules = append(delRules, ch.lines...)
		}
	}
	// A rule forgotten and compiled again is the same text: no change.
	if len(addRules) > 0 && len(delRules) > 0 {
		d, a := DiffLines(strings.Join(delRules, "\n"), strings.Join(addRules, "\n"))
		delRules, addRules = d, a
	}
	del, add = DiffLines(strings.Join(old.fixed, "\n"), strings.Join(new.fixed, "\n"))
	return append(del, delRules...), append(add, addRules...)
}

// finish sorts the flows by table and falling priority and renders the
// text: the rules' from their chunks, the others' (s.fixed) anew. The
// rules' flows are all in TablePerimeter and come in falling priority
// within each domain; only those of several domains need sorting.
func (s *Set) finish() {
	byOrder := func(a, b *Flow) int {
		if a.Table != b.Table {
			return int(a.Table) - int(b.Table)
		}
		return int(b.Priority) - int(a.Priority)
	}
	fixed := make([]*Flow, len(s.Flows))
	for i := range s.Flows {
		fixed[i] = &s.Flows[i]
	}
	slices.SortStableFunc(fixed, byOrder)
	type ref struct {
		f    *Flow
		text string
	}
	rules := make([]ref, 0, s.ruleFlows())
	for _, ch := range s.chunks {
		for i := range ch.flows {
			rules = append(rules, ref{&ch.flows[i], ch.lines[i]})
		}
	}
	cmpRef := func(a, b ref) int { return byOrder(a.f, b.f) }
	if !slices.IsSortedFunc(rules, cmpRef) {
		slices.SortStableFunc(rules, cmpRef)
	}
	flows := make([]Flow, 0, len(fixed)+len(rules))
	s.text = make([]string, 0, len(fixed)+len(rules))
	s.fixed = make([]string, 0, len(fixed))
	i, j := 0, 0
	for i < len(fixed) || j < len(rules) {
		// On a tie the fixed flow goes first.
		if j == len(rules) || i < len(fixed) && byOrder(fixed[i], rules[j].f) <= 0 {
			t := fixed[i].String()
			flows, s.text, s.fixed = append(flows, *fixed[i]), append(s.text, t), append(s.fixed, t)
			i++
			continue
		}
		flows, s.text = append(flows, *rules[j].f), append(s.text, rules[j].text)
		j++
	}
	s.Flows = flows
	slices.Sort(s.fixed)
}

func (s *Set) ruleFlows() int {
	n := 0
	for _, ch := range s.chunks {
		n += len(ch.flows)
	}
	return n
}
