package flow

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"secaas/internal/tenant"
)

// Cache remembers the flows each rule compiled to, and each domain's
// other flows, with their text, so that a compilation through it
// (Cache.Compile) compiles and renders only the rules whose content,
// priority or perimeters changed and the domains whose VMs, ports or
// tunnels changed, and Delta finds what changed by chunk instead of by
// line. With priorities
// kept stable (CompileFrom), adding one rule to a domain of thousands
// compiles one rule. A Cache is not safe for concurrent use.
type Cache struct {
	gen     uint64
	entries map[string]*chunk
	buf     []byte
}

// chunk is one rule's flows, or a domain's other flows, and their text;
// only gen changes once it is made.
type chunk struct {
	flows     []Flow
	lines     []string
	gen       uint64 // the last compilation that used it
	rule      bool   // one rule's: all in TablePerimeter, one priority
	tunnelled bool   // a domain's that output to the tunnel port
}

// domainChunk compiles a domain's flows but its rules' through the cache:
// they depend on the domain's VMs, uplinks and mode and on the switch's
// ports and tunnels, which its signature holds.
func (c *compiler) domainChunk(d *tenant.RDomain) bool {
	k := c.cache
	if k == nil {
		return c.domain(d)
	}
	k.buf = appendDomainSig(append(k.buf[:0], 'D'), d, c.ports, c.tun)
	if ch, ok := k.entries[string(k.buf)]; ok {
		ch.gen = k.gen
		c.set.chunks = append(c.set.chunks, ch)
		return ch.tunnelled
	}
	sig := string(k.buf)
	start := len(c.set.Flows)
	ch := &chunk{tunnelled: c.domain(d), gen: k.gen}
	ch.flows = slices.Clone(c.set.Flows[start:])
	c.set.Flows = c.set.Flows[:start]
	slices.SortStableFunc(ch.flows, func(a, b Flow) int { return byOrder(&a, &b) })
	for i := range ch.flows {
		ch.lines = append(ch.lines, ch.flows[i].String())
	}
	k.entries[sig] = ch
	c.set.chunks = append(c.set.chunks, ch)
	return ch.tunnelled
}

// appendDomainSig appends what a domain's flows but its rules' depend on.
func appendDomainSig(b []byte, d *tenant.RDomain, ports Ports, tun Tunnels) []byte {
	port := func(b []byte, name string) []byte {
		b = append(binary.AppendUvarint(b, uint64(len(name))), name...)
		no, local := ports[name]
		b = binary.BigEndian.AppendUint32(b, no)
		if !local && tun.Port != 0 {
			if e, ok := tun.Remote[name]; ok {
				a := e.As16()
				b = append(append(b, 1), a[:]...)
			}
		}
		return append(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(d.TID))
	b = binary.BigEndian.AppendUint32(b, tun.Port)
	if d.Stateful {
		b = append(b, 1)
	}
	b = binary.AppendUvarint(append(b, 0), uint64(len(d.Uplinks)))
	for _, u := range d.Uplinks {
		b = port(b, u)
	}
	b = binary.AppendUvarint(b, uint64(len(d.Subnets)))
	for _, s := range d.Subnets {
		b = binary.BigEndian.AppendUint32(b, s.Bit)
	}
	b = binary.AppendUvarint(b, uint64(len(d.VMs)))
	for _, vm := range d.VMs {
		b = port(b, vm.Port)
		b = append(b, vm.HW[:]...)
		a := vm.Addr.As16()
		b = append(append(b, byte(vm.Addr.BitLen())), a[:]...)
		b = binary.BigEndian.AppendUint32(b, vm.Subnet.Bit)
	}
	return b
}

func byOrder(a, b *Flow) int {
	if a.Table != b.Table {
		return int(a.Table) - int(b.Table)
	}
	return int(b.Priority) - int(a.Priority)
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
	ch := &chunk{rule: true}
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
// add to go from old to new: by chunk where both came through one Cache
// (a rule's flows, or a domain's other flows, are one unit), by line for
// the rest.
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
// text: the chunks' from the chunks, the others' anew (s.fixed). The
// rules' flows are all in TablePerimeter and come in falling priority
// within each domain; only those of several domains need sorting.
func (s *Set) finish() {
	type ref struct {
		f    *Flow
		text string
	}
	// The domains' flows come before the shared ones added after them, as
	// when they are not cached: the order of flows of one table and
	// priority does not depend on the cache.
	var fixed, rules []ref
	rules = make([]ref, 0, s.ruleFlows())
	for _, ch := range s.chunks {
		for i := range ch.flows {
			r := ref{&ch.flows[i], ch.lines[i]}
			if ch.rule {
				rules = append(rules, r)
			} else {
				fixed = append(fixed, r)
			}
		}
	}
	for i := range s.Flows {
		fixed = append(fixed, ref{f: &s.Flows[i]})
	}
	cmpRef := func(a, b ref) int { return byOrder(a.f, b.f) }
	slices.SortStableFunc(fixed, cmpRef)
	if !slices.IsSortedFunc(rules, cmpRef) {
		slices.SortStableFunc(rules, cmpRef)
	}
	flows := make([]Flow, 0, len(fixed)+len(rules))
	s.text = make([]string, 0, len(fixed)+len(rules))
	s.fixed = s.fixed[:0]
	i, j := 0, 0
	for i < len(fixed) || j < len(rules) {
		// On a tie the fixed flow goes first.
		if j == len(rules) || i < len(fixed) && byOrder(fixed[i].f, rules[j].f) <= 0 {
			r := fixed[i]
			if r.text == "" {
				r.text = r.f.String()
				s.fixed = append(s.fixed, r.text)
			}
			flows, s.text = append(flows, *r.f), append(s.text, r.text)
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
		if ch.rule {
			n += len(ch.flows)
		}
	}
	return n
}
