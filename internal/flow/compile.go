package flow

import (
	"fmt"
	"net/netip"
	"slices"

	"secaas/internal/tenant"
)

// Ports maps switch port names to OpenFlow port numbers. A port missing from
// the map is not attached: its VM gets no flows (and so no connectivity)
// until it appears.
type Ports map[string]uint32

// Priorities of the fixed flows.
const (
	prioDefault   = 0
	prioRuleTop   = 60000 // rule k of a perimeter gets prioRuleTop-k
	prioOutside   = 65000 // the "outside the domain" perimeter
	prioSpoofedIP = 200
	prioVM        = 300
	prioBadNA     = 305 // a neighbour advertisement for an address the VM does not own
	prioND        = 310
)

// ruleCookieBase marks cookies that name a rule; below it: TID<<32 | priority.
const ruleCookieBase = 0x5ec0_0000_0000_0000

// Compile turns a validated tenant net into the flow set that enforces it.
// It does no I/O and is deterministic.
func Compile(n *tenant.Net, ports Ports) (*Set, error) { return CompileFrom(n, ports, nil) }

// CompileFrom compiles like Compile but keeps the OpenFlow priorities that
// prev (an earlier Set's Priorities) gave to rules that still exist, so that
// adding or removing one rule changes only that rule's flows.
func CompileFrom(n *tenant.Net, ports Ports, prev Priorities) (*Set, error) {
	return CompileWith(n, ports, Tunnels{}, prev)
}

// Tunnels says how a host reaches the VMs of its domains that run on
// other hosts: through one VXLAN port (its OpenFlow number; 0: none),
// with the tunnel key set to the domain's TID and the endpoint of the
// VM's host, by VM port name. A port attached here is local whatever
// Remote says.
type Tunnels struct {
	Port   uint32
	Remote map[string]netip.Addr
}

// CompileWith compiles like CompileFrom for one host of a domain that
// spans hosts. The sending host evaluates both perimeters and sends a
// passed packet through the tunnel; the receiving host admits from the
// tunnel only the domain's key, from the endpoint of the source VM's
// host, with that VM's MAC, and evaluates the perimeters again (so that
// conntrack on both hosts sees both directions). Broadcasts from the
// tunnel go to local VMs only; each host's VMs reach the outside by that
// host's uplinks.
func CompileWith(n *tenant.Net, ports Ports, tun Tunnels, prev Priorities) (*Set, error) {
	return compileWith(n, ports, tun, prev, nil)
}

func compileWith(n *tenant.Net, ports Ports, tun Tunnels, prev Priorities, cache *Cache) (*Set, error) {
	rules := 0
	for _, d := range n.Domains {
		rules += len(d.Rules)
	}
	c := &compiler{set: &Set{Rules: make(map[uint64]tenant.RuleRef, rules), Priorities: make(Priorities, rules)}, ports: ports, tun: tun, prev: prev, cache: cache}
	tunnelled := false
	for _, d := range n.Domains {
		tunnelled = c.domainChunk(d) || tunnelled
		c.rules(d)
	}
	if tunnelled {
		c.add(TableOutput, 100, reg(RegOutPort, tun.Port), Action{Kind: Output, Value: tun.Port})
	}
	// Table-miss: explicit drops so the intent is visible in dumps, plus the
	// fixed fall-throughs.
	for _, t := range []uint8{TableClassify, TableL2, TableLookup, TableCTState, TablePerimeter, TableVerdict, TableOutput} {
		c.add(t, prioDefault, Match{})
	}
	c.add(TableConntrack, prioDefault, Match{}, Action{Kind: Goto, Value: TablePerims})
	c.add(TableCommit, prioDefault, Match{}, Action{Kind: Goto, Value: TableOutput})
	// Evaluate the source perimeter, keep its verdict, evaluate the
	// destination perimeter; pass only if both passed.
	c.add(TablePerims, prioDefault, Match{},
		Action{Kind: Move, Reg: RegSrcNet, Value: RegPerim}, Action{Kind: Resubmit, Value: TablePerimeter},
		Action{Kind: Move, Reg: RegPass, Value: RegPass1}, set(RegPass, 0),
		Action{Kind: Move, Reg: RegDstNet, Value: RegPerim}, Action{Kind: Resubmit, Value: TablePerimeter},
		gotoT(TableVerdict))
	both := reg(RegPass, 1)
	both.setReg(RegPass1, 1)
	c.add(TableVerdict, 100, both, gotoT(TableCommit))
	// The outside of a domain has no perimeter of its own (constraint c).
	c.add(TablePerimeter, prioOutside, reg(RegPerim, 0), set(RegPass, 1))
	if c.err != nil {
		return nil, c.err
	}
	c.set.finish()
	return c.set, nil
}

type compiler struct {
	set   *Set
	ports Ports
	tun   Tunnels
	prev  Priorities
	cache *Cache // nil: compile every rule
	err   error
}

// remote returns the tunnel endpoint of a VM port on another host.
func (c *compiler) remote(port string) (netip.Addr, bool) {
	if c.tun.Port == 0 {
		return netip.Addr{}, false
	}
	if _, local := c.ports[port]; local {
		return netip.Addr{}, false
	}
	e, ok := c.tun.Remote[port]
	return e, ok && e.IsValid()
}

func (c *compiler) add(table uint8, prio int, m Match, acts ...Action) *Flow {
	if prio < 0 || prio > 65535 {
		c.err = fmt.Errorf("compile: priority %d out of range", prio)
		prio = 0
	}
	c.set.Flows = append(c.set.Flows, Flow{Table: table, Priority: uint16(prio), Match: m, Actions: acts})
	return &c.set.Flows[len(c.set.Flows)-1]
}

func reg(i int, v uint32) Match {
	var m Match
	m.setReg(i, v)
	return m
}

func (m *Match) setReg(i int, v uint32) {
	m.Has |= FReg0 << i
	m.Regs[i] = v
}

func set(r int, v uint32) Action { return Action{Kind: SetReg, Reg: r, Value: v} }
func gotoT(t uint8) Action       { return Action{Kind: Goto, Value: uint32(t)} }

var multicastBit = tenant.MAC{1}

// rules compiles a domain's rules: one flow set per rule, whatever the
// number of perimeters it sits on: reg5 (a one-hot subnet bit) must fall
// inside the rule's perimeter set. Priorities strictly decrease along the
// domain's rule order, so each perimeter sees its rules in tenant order.
func (c *compiler) rules(d *tenant.RDomain) {
	sigs := ruleSigs(d.Rules)
	prios := assignPriorities(d.Rules, sigs, c.prev, c.set.Priorities)
	for k, r := range d.Rules {
		// The cookie names the rule and is as stable as its priority.
		cookie := ruleCookieBase | uint64(d.TID)<<32 | uint64(prios[k])
		c.set.Rules[cookie] = r.Ref
		c.set.chunks = append(c.set.chunks, c.ruleChunk(uint32(d.TID), r, sigs[k], prios[k]))
	}
}

// domain compiles one domain's flows but its rules' (classification,
// neighbour discovery, lookup, conntrack, output); it says whether any
// flow outputs to the tunnel port.
func (c *compiler) domain(d *tenant.RDomain) bool {
	tid := uint32(d.TID)
	var uplinks []uint32
	for _, u := range d.Uplinks {
		if no, ok := c.ports[u]; ok {
			uplinks = append(uplinks, no)
		}
	}
	toUplinks := func() []Action {
		if len(uplinks) == 0 {
			return nil
		}
		acts := []Action{{Kind: PushVLAN, Value: tid}}
		for _, u := range uplinks {
			acts = append(acts, Action{Kind: Output, Value: u})
		}
		return acts
	}

	// Ingress from VM ports, with anti-spoofing.
	var flood []Action
	for _, vm := range d.VMs {
		no, ok := c.ports[vm.Port]
		if !ok {
			continue
		}
		flood = append(flood, Action{Kind: Output, Value: no})
		classify := []Action{set(RegTID, tid), set(RegSrcNet, vm.Subnet.Bit)}
		base := Match{Has: FInPort | FUntagged | FDlSrc, InPort: no, DlSrc: vm.HW}
		if vm.Addr.Is4() {
			m := base
			m.Has |= FDlType | FArpSPA | FArpSHA
			m.DlType, m.ArpSPA, m.ArpSHA = tenant.EthARP, vm.Addr, vm.HW
			c.add(TableClassify, prioVM, m, append(classify, gotoT(TableL2))...)
			m = base
			m.Has |= FDlType | FNwSrc
			m.DlType, m.NwSrc = tenant.EthIPv4, netip.PrefixFrom(vm.Addr, 32)
			c.add(TableClassify, prioVM, m, append(classify, gotoT(TableLookup))...)
		}
		c.antiSpoofIPv6(vm, base, classify)
		for _, et := range []uint16{tenant.EthARP, tenant.EthIPv4, tenant.EthIPv6} {
			m := base
			m.Has |= FDlType
			m.DlType = et
			c.add(TableClassify, prioSpoofedIP, m) // drop: wrong ARP sender or IP source
		}
		c.add(TableClassify, 100, base, append(classify, gotoT(TableLookup))...)
	}
	// Ingress from uplinks: the tag selects the domain.
	for _, u := range uplinks {
		c.ingress(Match{Has: FInPort | FVLAN, InPort: u, VLAN: uint16(tid)}, []Action{{Kind: PopVLAN}, set(RegTID, tid), set(RegSrcNet, 0)})
	}

	// Ingress from the tunnel: the key selects the domain, the endpoint
	// and the MAC the source VM (its host did the anti-spoofing).
	var endpoints []netip.Addr
	for _, vm := range d.VMs {
		e, ok := c.remote(vm.Port)
		if !ok {
			continue
		}
		if !slices.Contains(endpoints, e) {
			endpoints = append(endpoints, e)
		}
		c.ingress(Match{Has: FInPort | FTunID | FTunSrc | FDlSrc, InPort: c.tun.Port, TunID: tid, TunSrc: e, DlSrc: vm.HW},
			[]Action{set(RegTID, tid), set(RegSrcNet, vm.Subnet.Bit)})
	}
	slices.SortFunc(endpoints, netip.Addr.Compare)
	toTunnel := func(e netip.Addr) []Action {
		return []Action{{Kind: SetTunnel, Value: tid, Addr: e}, {Kind: Output, Value: c.tun.Port}}
	}

	// ARP/ND: flood or deliver inside the domain only; what came through
	// the tunnel goes to this host's VMs only.
	mcast := reg(RegTID, tid)
	mcast.Has |= FDlDst
	mcast.DlDst, mcast.DlDstMask = multicastBit, multicastBit
	acts := append([]Action{}, flood...)
	for _, e := range endpoints {
		acts = append(acts, toTunnel(e)...)
	}
	if acts := append(acts, toUplinks()...); len(acts) > 0 {
		c.add(TableL2, 100, mcast, acts...)
	}
	// Nothing from the outside goes into the tunnel: it reaches each host
	// by that host's uplinks, and the far host could not tell it from its
	// VMs' own packets.
	fromOutside := func(m Match) Match {
		m.setReg(RegSrcNet, 0)
		return m
	}
	if len(endpoints) > 0 {
		m := mcast
		m.Has |= FInPort
		m.InPort = c.tun.Port
		c.add(TableL2, 110, m, flood...)
		if len(uplinks) > 0 {
			c.add(TableL2, 105, fromOutside(mcast), append(append([]Action{}, flood...), toUplinks()...)...)
		}
	}
	for _, vm := range d.VMs {
		m := reg(RegTID, tid)
		m.Has |= FDlDst
		m.DlDst = vm.HW
		if no, ok := c.ports[vm.Port]; ok {
			c.add(TableL2, 100, m, Action{Kind: Output, Value: no})
		} else if e, ok := c.remote(vm.Port); ok {
			c.add(TableL2, 100, m, toTunnel(e)...)
			if len(uplinks) > 0 {
				c.add(TableL2, 105, fromOutside(m))
			}
		} else {
			c.add(TableL2, 100, m) // known VM, not attached: drop
		}
	}
	if len(uplinks) > 0 {
		c.add(TableL2, 50, reg(RegTID, tid), toUplinks()...)
	}

	// Destination lookup.
	for _, vm := range d.VMs {
		m := reg(RegTID, tid)
		m.Has |= FDlDst
		m.DlDst = vm.HW
		no, ok := c.ports[vm.Port]
		if e, remote := c.remote(vm.Port); remote {
			// The tunnel fields survive conntrack's recirculation.
			c.add(TableLookup, 100, m, set(RegDstNet, vm.Subnet.Bit), set(RegOutPort, c.tun.Port),
				Action{Kind: SetTunnel, Value: tid, Addr: e}, gotoT(TableConntrack))
			if len(uplinks) > 0 {
				c.add(TableLookup, 105, fromOutside(m))
			}
			continue
		}
		if !ok {
			c.add(TableLookup, 100, m) // known VM, not attached: drop, never to an uplink
			continue
		}
		c.add(TableLookup, 100, m, set(RegDstNet, vm.Subnet.Bit), set(RegOutPort, no), gotoT(TableConntrack))
	}
	c.add(TableLookup, 60, mcast) // other broadcast/multicast: drop
	if len(uplinks) > 0 {
		fromUp := reg(RegTID, tid)
		fromUp.setReg(RegSrcNet, 0)
		c.add(TableLookup, 55, fromUp) // uplink to uplink: drop
		c.add(TableLookup, 50, reg(RegTID, tid), set(RegDstNet, 0), set(RegOutPort, UplinkPort), gotoT(TableConntrack))
		m := reg(RegTID, tid)
		m.setReg(RegOutPort, UplinkPort)
		c.add(TableOutput, 100, m, toUplinks()...)
	}

	// Conntrack for stateful domains, zone = TID.
	if d.Stateful {
		for _, et := range []uint16{tenant.EthIPv4, tenant.EthIPv6} {
			m := reg(RegTID, tid)
			m.Has |= FDlType
			m.DlType = et
			c.add(TableConntrack, 100, m, Action{Kind: CT, Value: TableCTState, Zone: uint16(tid)})
			c.add(TableCommit, 100, m, Action{Kind: CT, Commit: true, Zone: uint16(tid)}, gotoT(TableOutput))
		}
		for _, st := range []uint8{CTEst, CTRel} {
			m := reg(RegTID, tid)
			m.Has |= FCTState
			m.CTSet = CTTrk | st
			m.CTClear = CTInv
			c.add(TableCTState, 100, m, gotoT(TableOutput))
		}
		m := reg(RegTID, tid)
		m.Has |= FCTState
		m.CTSet = CTTrk | CTNew
		m.CTClear = CTInv | CTEst | CTRel
		c.add(TableCTState, 90, m, gotoT(TablePerims))
		// +inv and anything else: table-miss drop.
	}

	for _, s := range d.Subnets {
		// The VM ports themselves.
		for _, vm := range d.VMs {
			if vm.Subnet != s {
				continue
			}
			if no, ok := c.ports[vm.Port]; ok {
				c.add(TableOutput, 100, reg(RegOutPort, no), Action{Kind: Output, Value: no})
			}
		}
	}
	return len(endpoints) > 0
}

// ingress classifies what base matches (an uplink's tag, a tunnel's key
// and source) with classify: ARP and neighbour discovery to TableL2, the
// rest to TableLookup.
func (c *compiler) ingress(base Match, classify []Action) {
	m := base
	m.Has |= FDlType
	m.DlType = tenant.EthARP
	c.add(TableClassify, prioVM, m, append(classify, gotoT(TableL2))...)
	for _, typ := range ndTypes {
		m := base
		m.Has |= FDlType | FNwProto | FICMPType
		m.DlType, m.NwProto, m.ICMPType = tenant.EthIPv6, tenant.ProtoICMP6, typ
		c.add(TableClassify, prioVM, m, append(classify, gotoT(TableL2))...)
	}
	c.add(TableClassify, 100, base, append(classify, gotoT(TableLookup))...)
}

var ndTypes = []uint8{tenant.NDRouterSolicit, tenant.NDRouterAdvert, tenant.NDNeighborSolicit, tenant.NDNeighborAdvert}

var (
	linkLocal   = netip.MustParsePrefix("fe80::/10")
	unspecified = netip.MustParsePrefix("::/128")
)

// antiSpoofIPv6 admits the IPv6 a VM may send (tenant.RVM.OwnsIPv6): its
// own address or a link-local one as source, the unspecified source for
// solicitations, and neighbour advertisements only for addresses it owns.
// Everything else IPv6 falls to the spoofing drop.
func (c *compiler) antiSpoofIPv6(vm *tenant.RVM, base Match, classify []Action) {
	own := []netip.Prefix{linkLocal}
	if vm.Addr.Is6() {
		own = append(own, netip.PrefixFrom(vm.Addr, 128))
	}
	nd := func(typ uint8, src, target netip.Prefix) {
		m := base
		m.Has |= FDlType | FNwProto | FICMPType | FNwSrc
		m.DlType, m.NwProto, m.ICMPType, m.NwSrc = tenant.EthIPv6, tenant.ProtoICMP6, typ, src
		if target.IsValid() {
			m.Has |= FNdTarget
			m.NdTarget = target
		}
		c.add(TableClassify, prioND, m, append(classify, gotoT(TableL2))...)
	}
	for _, typ := range ndTypes {
		srcs := own
		if typ == tenant.NDRouterSolicit || typ == tenant.NDNeighborSolicit {
			srcs = append(slices.Clone(own), unspecified)
		}
		for _, src := range srcs {
			if typ != tenant.NDNeighborAdvert {
				nd(typ, src, netip.Prefix{})
				continue
			}
			for _, target := range own {
				nd(typ, src, target)
			}
		}
	}
	m := base
	m.Has |= FDlType | FNwProto | FICMPType
	m.DlType, m.NwProto, m.ICMPType = tenant.EthIPv6, tenant.ProtoICMP6, tenant.NDNeighborAdvert
	c.add(TableClassify, prioBadNA, m) // drop
	for _, src := range own {
		m := base
		m.Has |= FDlType | FNwSrc
		m.DlType, m.NwSrc = tenant.EthIPv6, src
		c.add(TableClassify, prioVM, m, append(classify, gotoT(TableLookup))...)
	}
}

// ruleMatches expands a rule into the cross product of its sets.
func ruleMatches(r *tenant.Rule) []Match {
	out := []Match{{}}
	cross := func(vals int, f func(m *Match, i int)) {
		if vals == 0 {
			return
		}
		next := make([]Match, 0, len(out)*vals)
		for _, m := range out {
			for i := 0; i < vals; i++ {
				mm := m
				f(&mm, i)
				next = append(next, mm)
			}
		}
		out = next
	}
	cross(len(r.SrcMAC), func(m *Match, i int) { m.Has |= FDlSrc; m.DlSrc = r.SrcMAC[i] })
	cross(len(r.DstMAC), func(m *Match, i int) { m.Has |= FDlDst; m.DlDst = r.DstMAC[i] })
	needIP := len(r.SrcIP) > 0 || len(r.DstIP) > 0 || r.Proto != 0 || r.HasPorts()
	if !needIP {
		return dedupe(out)
	}
	// Layer 3: one branch per (family, src prefix, dst prefix, protocol).
	type l3 struct {
		et       uint16
		src, dst netip.Prefix
		proto    uint8
	}
	var l3s []l3
	for _, et := range []uint16{tenant.EthIPv4, tenant.EthIPv6} {
		is4 := et == tenant.EthIPv4
		srcs := famPrefixes(r.SrcIP, is4)
		dsts := famPrefixes(r.DstIP, is4)
		if srcs == nil || dsts == nil {
			continue
		}
		var protos []uint8
		switch {
		case r.Proto == tenant.ProtoICMP && !is4, r.Proto == tenant.ProtoICMP6 && is4:
			continue
		case r.Proto != 0:
			protos = []uint8{r.Proto}
		case r.HasPorts():
			protos = []uint8{tenant.ProtoTCP, tenant.ProtoUDP}
		default:
			protos = []uint8{0}
		}
		for _, s := range srcs {
			for _, d := range dsts {
				for _, p := range protos {
					l3s = append(l3s, l3{et, s, d, p})
				}
			}
		}
	}
	cross(len(l3s), func(m *Match, i int) {
		x := l3s[i]
		m.Has |= FDlType
		m.DlType = x.et
		if x.src.IsValid() {
			m.Has |= FNwSrc
			m.NwSrc = x.src
		}
		if x.dst.IsValid() {
			m.Has |= FNwDst
			m.NwDst = x.dst
		}
		if x.proto != 0 {
			m.Has |= FNwProto
			m.NwProto = x.proto
		}
	})
	if len(l3s) == 0 {
		return nil // cannot match anything
	}
	if !r.SrcPort.Any() {
		blocks := portBlocks(r.SrcPort)
		cross(len(blocks), func(m *Match, i int) { m.Has |= FTpSrc; m.TpSrc, m.TpSrcMask = blocks[i][0], blocks[i][1] })
	}
	if !r.DstPort.Any() {
		blocks := portBlocks(r.DstPort)
		cross(len(blocks), func(m *Match, i int) { m.Has |= FTpDst; m.TpDst, m.TpDstMask = blocks[i][0], blocks[i][1] })
	}
	return dedupe(out)
}

// dedupe drops repeated matches (a set may name one address twice).
func dedupe(ms []Match) []Match {
	seen := make(map[Match]bool, len(ms))
	out := ms[:0]
	for _, m := range ms {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// famPrefixes returns the prefixes of one family, [invalid] for "any", or nil
// when the rule has prefixes but none of this family.
func famPrefixes(ps []netip.Prefix, is4 bool) []netip.Prefix {
	if len(ps) == 0 {
		return []netip.Prefix{{}}
	}
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == is4 {
			out = append(out, p)
		}
	}
	return out
}

// portBlocks covers an inclusive port range with value/mask pairs.
func portBlocks(r tenant.PortRange) [][2]uint16 {
	var out [][2]uint16
	lo, hi := uint32(r.Lo), uint32(r.Hi)
	for lo <= hi {
		size := uint32(1)
		for lo%(size*2) == 0 && lo+size*2-1 <= hi && size < 1<<16 {
			size *= 2
		}
		out = append(out, [2]uint16{uint16(lo), uint16(^(size - 1))})
		lo += size
	}
	return out
}
