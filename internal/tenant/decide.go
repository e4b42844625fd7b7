package tenant

import (
	"fmt"
	"net/netip"
	"slices"
)

// EtherTypes the model knows.
const (
	EthIPv4 = 0x0800
	EthARP  = 0x0806
	EthIPv6 = 0x86dd
)

// Packet is one frame as it enters the switch.
type Packet struct {
	InPort   string
	VLAN     int // 802.1Q tag, 0 when untagged
	EthSrc   MAC
	EthDst   MAC
	EthType  uint16
	ARPSHA   MAC        // ARP sender hardware address
	ARPSPA   netip.Addr // ARP sender protocol address
	Src, Dst netip.Addr // IP addresses
	Proto    uint8
	SrcPort  uint16 // TCP/UDP
	DstPort  uint16
	ICMPType uint8
	NDTarget netip.Addr // ND target address (neighbour solicitation/advertisement)
	// Established marks a packet of a connection whose first packet already
	// passed (conntrack +est or +rel). Only stateful domains use it.
	Established bool
}

// IsIP reports whether p is IPv4 or IPv6.
func (p *Packet) IsIP() bool { return p.EthType == EthIPv4 || p.EthType == EthIPv6 }

// IsND reports whether p is IPv6 neighbour discovery (ICMPv6 133-136).
func (p *Packet) IsND() bool {
	return p.EthType == EthIPv6 && p.Proto == ProtoICMP6 && p.ICMPType >= 133 && p.ICMPType <= 136
}

// ICMPv6 neighbour discovery types.
const (
	NDRouterSolicit   = 133
	NDRouterAdvert    = 134
	NDNeighborSolicit = 135
	NDNeighborAdvert  = 136
)

// OwnsIPv6 reports whether vm may use a as its IPv6 source (or advertise it
// in a neighbour advertisement): its own IPv6 address, or any link-local
// address (fe80::/10; guests derive these in several ways, so they are not
// bound to the MAC), or the unspecified address when unspecOK (duplicate
// address detection and router solicitation before an address is ready).
func (vm *RVM) OwnsIPv6(a netip.Addr, unspecOK bool) bool {
	switch {
	case !a.Is6() || a.Is4In6():
		return false
	case a == vm.Addr, a.IsLinkLocalUnicast():
		return true
	}
	return unspecOK && a.IsUnspecified()
}

// Verdict is what the switch must do with a packet.
type Verdict struct {
	Action Action    `json:"action"`
	Out    []string  `json:"out,omitempty"` // ports the packet leaves by
	Reason string    `json:"reason"`
	Rules  []RuleRef `json:"rules,omitempty"` // the rules that decided, source perimeter first
}

func drop(reason string, rules ...RuleRef) Verdict {
	return Verdict{Action: Drop, Reason: reason, Rules: rules}
}

// Decide is the reference evaluator: the verdict the switch must reach for p.
func (n *Net) Decide(p Packet) Verdict {
	var d *RDomain
	var src *RVM
	if vm, ok := n.byPort[p.InPort]; ok {
		src, d = vm, vm.Subnet.Domain
		switch {
		case p.VLAN != 0:
			return drop("tagged frame on a VM port")
		case p.EthSrc != vm.HW:
			return drop(fmt.Sprintf("source MAC %s is not vm %s's (%s)", p.EthSrc, vm.Name, vm.HW))
		case p.EthType == EthARP && (p.ARPSHA != vm.HW || !vm.Addr.Is4() || p.ARPSPA != vm.Addr):
			return drop("ARP sender does not match vm " + vm.Name)
		case p.EthType == EthIPv4 && (!vm.Addr.Is4() || p.Src != vm.Addr):
			return drop("IPv4 source does not match vm " + vm.Name)
		case p.EthType == EthIPv6 && !vm.OwnsIPv6(p.Src, p.IsND() && (p.ICMPType == NDRouterSolicit || p.ICMPType == NDNeighborSolicit)):
			return drop("IPv6 source does not match vm " + vm.Name)
		case p.IsND() && p.ICMPType == NDNeighborAdvert && !vm.OwnsIPv6(p.NDTarget, false):
			return drop("neighbour advertisement for an address vm " + vm.Name + " does not own")
		}
	} else if ud, ok := n.UplinkDomain(p.InPort, p.VLAN); ok {
		d = ud
	} else {
		return drop("frame from port " + p.InPort + " with tag " + fmt.Sprint(p.VLAN) + " belongs to no domain")
	}

	// Layer 2 plumbing: ARP and neighbour discovery stay inside the domain.
	if p.EthType == EthARP || p.IsND() {
		if p.EthDst.Multicast() {
			out := n.domainPorts(d, p.InPort)
			if len(out) == 0 {
				return drop("no other port in the domain")
			}
			return Verdict{Action: Pass, Out: out, Reason: "ARP/ND flooded within domain " + fmt.Sprint(d.TID)}
		}
		out := n.unicastOut(d, p.EthDst)
		out = slices.DeleteFunc(out, func(s string) bool { return s == p.InPort })
		if len(out) == 0 {
			return drop("ARP/ND destination not in the domain")
		}
		return Verdict{Action: Pass, Out: out, Reason: "ARP/ND delivered within domain " + fmt.Sprint(d.TID)}
	}
	if p.EthDst.Multicast() {
		return drop("broadcast/multicast other than ARP/ND is not forwarded")
	}
	dst, _ := d.VMByMAC(p.EthDst)
	out := n.unicastOut(d, p.EthDst)
	if len(out) == 0 {
		return drop("destination MAC not in the domain and the domain has no uplink")
	}
	if dst == nil && src == nil {
		return drop("uplink to uplink traffic is not forwarded")
	}
	if dst != nil && dst.Port == p.InPort {
		return drop("destination is the ingress port")
	}
	if d.Stateful && p.IsIP() && p.Established {
		return Verdict{Action: Pass, Out: out, Reason: "established connection (conntrack)"}
	}
	var rules []RuleRef
	for _, vm := range []*RVM{src, dst} {
		if vm == nil {
			continue
		}
		r := vm.Subnet.First(&p)
		if r == nil {
			return drop(fmt.Sprintf("no rule of subnet %s matches (constraint d)", vm.Subnet.Name), rules...)
		}
		rules = append(rules, r.Ref)
		if r.Action == Drop {
			return drop(fmt.Sprintf("rule %s of subnet %s drops", r.Ref, vm.Subnet.Name), rules...)
		}
	}
	reason := "passed by both perimeters (constraint b)"
	if src == nil || dst == nil {
		reason = "passed by the VM's own perimeter (constraint c)"
	}
	return Verdict{Action: Pass, Out: out, Reason: reason, Rules: rules}
}

// First returns the first rule of the perimeter that matches p, or nil.
func (s *RSubnet) First(p *Packet) *Rule {
	for _, r := range s.Perimeter {
		if r.Matches(p) {
			return r
		}
	}
	return nil
}

// Matches reports whether the rule's fields all match p.
func (r *Rule) Matches(p *Packet) bool {
	if len(r.SrcMAC) > 0 && !slices.Contains(r.SrcMAC, p.EthSrc) {
		return false
	}
	if len(r.DstMAC) > 0 && !slices.Contains(r.DstMAC, p.EthDst) {
		return false
	}
	needIP := len(r.SrcIP) > 0 || len(r.DstIP) > 0 || r.Proto != 0 || r.HasPorts()
	if !needIP {
		return true
	}
	if !p.IsIP() {
		return false
	}
	if len(r.SrcIP) > 0 && !anyContains(r.SrcIP, p.Src) || len(r.DstIP) > 0 && !anyContains(r.DstIP, p.Dst) {
		return false
	}
	switch {
	case r.Proto == ProtoICMP && p.EthType != EthIPv4, r.Proto == ProtoICMP6 && p.EthType != EthIPv6:
		return false
	case r.Proto != 0 && r.Proto != p.Proto:
		return false
	}
	if r.HasPorts() {
		if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
			return false
		}
		return r.SrcPort.Contains(p.SrcPort) && r.DstPort.Contains(p.DstPort)
	}
	return true
}

func anyContains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// domainPorts lists every port of d (VMs, then uplinks) except skip.
func (n *Net) domainPorts(d *RDomain, skip string) []string {
	var out []string
	for _, vm := range d.VMs {
		if vm.Port != skip {
			out = append(out, vm.Port)
		}
	}
	for _, u := range d.Uplinks {
		if u != skip {
			out = append(out, u)
		}
	}
	return out
}

// unicastOut is where a unicast frame to m leaves d: the VM's port, or the
// domain's uplinks when m is not a VM of d.
func (n *Net) unicastOut(d *RDomain, m MAC) []string {
	if vm, ok := d.VMByMAC(m); ok {
		return []string{vm.Port}
	}
	return slices.Clone(d.Uplinks)
}
