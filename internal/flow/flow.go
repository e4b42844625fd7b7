package flow

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"secaas/internal/tenant"
)

// Tables of the pipeline.
const (
	TableClassify  = 0  // ingress: port -> domain, anti-spoofing
	TableL2        = 10 // ARP and neighbour discovery inside a domain
	TableLookup    = 20 // destination MAC -> destination subnet and port
	TableConntrack = 24 // stateful domains: send IP through conntrack
	TableCTState   = 25 // established/related skip the perimeters
	TablePerims    = 30 // evaluate the source, then the destination perimeter
	TablePerimeter = 31 // the rules; called twice with reg5 = one perimeter
	TableVerdict   = 32 // both perimeters passed?
	TableCommit    = 40 // stateful domains: commit passed connections
	TableOutput    = 45 // reg4 -> port
)

// Registers.
const (
	RegTID     = 0 // domain TID
	RegSrcNet  = 1 // source subnet bit (0: outside the domain)
	RegDstNet  = 3 // destination subnet bit (0: outside the domain)
	RegOutPort = 4 // output port (UplinkPort: the domain's uplinks)
	RegPerim   = 5 // the perimeter being evaluated (a subnet bit)
	RegPass    = 6 // 1 if that perimeter passed the packet
	RegPass1   = 7 // the source perimeter's RegPass
	NumRegs    = 8
)

// UplinkPort in RegOutPort means "leave by the domain's uplinks".
const UplinkPort = 0xffff

// Field bits of Match.Has.
const (
	FInPort uint32 = 1 << iota
	FUntagged
	FVLAN
	FDlSrc
	FDlDst
	FDlType
	FNwSrc
	FNwDst
	FNwProto
	FTpSrc
	FTpDst
	FICMPType
	FArpSPA
	FArpSHA
	FNdTarget
	FCTState
	FTunID  // the tunnel key a packet arrived with
	FTunSrc // the tunnel endpoint it came from
	FReg0   // FReg0<<i for register i (0..NumRegs-1)
)

// CT state bits.
const (
	CTNew uint8 = 1 << iota
	CTEst
	CTRel
	CTInv
	CTTrk
)

// Match is an OpenFlow match; Has says which fields are set.
type Match struct {
	Has       uint32
	InPort    uint32
	VLAN      uint16
	DlSrc     tenant.MAC
	DlDst     tenant.MAC
	DlDstMask tenant.MAC // zero: exact
	DlType    uint16
	NwSrc     netip.Prefix
	NwDst     netip.Prefix
	NwProto   uint8
	TpSrc     uint16
	TpSrcMask uint16
	TpDst     uint16
	TpDstMask uint16
	ICMPType  uint8
	ArpSPA    netip.Addr
	ArpSHA    tenant.MAC
	NdTarget  netip.Prefix
	CTSet     uint8 // bits that must be 1
	CTClear   uint8 // bits that must be 0
	TunID     uint32
	TunSrc    netip.Addr
	Regs      [NumRegs]uint32
	RegMasks  [NumRegs]uint32 // 0: exact match
}

// Kind of an action.
type Kind uint8

// Action kinds.
const (
	SetReg Kind = iota + 1
	Output
	Goto
	PushVLAN
	PopVLAN
	CT
	Move      // register Reg -> register Value
	Resubmit  // run table Value, then continue
	SetTunnel // tunnel key Value, endpoint Addr, for a later output to the tunnel port
)

// Action is one OpenFlow action or instruction.
type Action struct {
	Kind   Kind
	Reg    int
	Value  uint32 // SetReg value, Output port, Goto/CT table, PushVLAN vid
	Zone   uint16
	Commit bool
	Addr   netip.Addr // SetTunnel endpoint
}

// Flow is one flow entry.
type Flow struct {
	Table    uint8
	Priority uint16
	Cookie   uint64
	Match    Match
	Actions  []Action // empty: drop
}

// Set is a compiled flow set and what its cookies mean.
type Set struct {
	Flows      []Flow
	Rules      map[uint64]tenant.RuleRef // rule cookie -> rule
	Priorities Priorities                // rule key -> OpenFlow priority, for CompileFrom
	chunks     []*chunk                  // the rules' flows, by rule (see Cache)
	text       []string                  // Flows rendered
	fixed      []string                  // the text of the flows that are not a rule's, sorted
}

// String renders the set in ovs-ofctl syntax, one flow per line, sorted
// by table and falling priority.
func (s *Set) String() string {
	n := 0
	for _, l := range s.text {
		n += len(l) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, l := range s.text {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// String renders one flow for ovs-ofctl (add-flow / replace-flows).
func (f *Flow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table=%d, priority=%d", f.Table, f.Priority)
	if f.Cookie != 0 {
		fmt.Fprintf(&b, ", cookie=%#x", f.Cookie)
	}
	if m := f.Match.String(); m != "" {
		b.WriteString(", ")
		b.WriteString(m)
	}
	b.WriteString(" actions=")
	if len(f.Actions) == 0 {
		b.WriteString("drop")
		return b.String()
	}
	for i, a := range f.Actions {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(a.String())
	}
	return b.String()
}

func (a Action) String() string {
	switch a.Kind {
	case SetReg:
		return fmt.Sprintf("set_field:%d->reg%d", a.Value, a.Reg)
	case Output:
		return "output:" + strconv.Itoa(int(a.Value))
	case Goto:
		return "goto_table:" + strconv.Itoa(int(a.Value))
	case PushVLAN:
		return fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid", 0x1000|a.Value)
	case PopVLAN:
		return "pop_vlan"
	case Move:
		return fmt.Sprintf("move:NXM_NX_REG%d[]->NXM_NX_REG%d[]", a.Reg, a.Value)
	case Resubmit:
		return fmt.Sprintf("resubmit(,%d)", a.Value)
	case SetTunnel:
		return fmt.Sprintf("set_field:%d->tun_id,set_field:%s->tun_dst", a.Value, a.Addr)
	case CT:
		if a.Commit {
			return fmt.Sprintf("ct(commit,zone=%d)", a.Zone)
		}
		return fmt.Sprintf("ct(table=%d,zone=%d)", a.Value, a.Zone)
	}
	return "?"
}

var ctNames = []struct {
	bit  uint8
	name string
}{{CTNew, "new"}, {CTEst, "est"}, {CTRel, "rel"}, {CTInv, "inv"}, {CTTrk, "trk"}}

// String renders the match in ovs-ofctl syntax.
func (m *Match) String() string {
	var p []string
	add := func(f string, a ...any) { p = append(p, fmt.Sprintf(f, a...)) }
	for i := range m.Regs {
		if m.Has&(FReg0<<i) != 0 {
			if m.RegMasks[i] != 0 {
				add("reg%d=%#x/%#x", i, m.Regs[i], m.RegMasks[i])
			} else {
				add("reg%d=%d", i, m.Regs[i])
			}
		}
	}
	if m.Has&FCTState != 0 {
		s := "ct_state="
		for _, c := range ctNames {
			if m.CTSet&c.bit != 0 {
				s += "+" + c.name
			}
			if m.CTClear&c.bit != 0 {
				s += "-" + c.name
			}
		}
		p = append(p, s)
	}
	if m.Has&FInPort != 0 {
		add("in_port=%d", m.InPort)
	}
	if m.Has&FTunID != 0 {
		add("tun_id=%d", m.TunID)
	}
	if m.Has&FTunSrc != 0 {
		add("tun_src=%s", m.TunSrc)
	}
	if m.Has&FUntagged != 0 {
		add("vlan_tci=0x0000/0x1fff")
	}
	if m.Has&FVLAN != 0 {
		add("dl_vlan=%d", m.VLAN)
	}
	if m.Has&FDlSrc != 0 {
		add("dl_src=%s", m.DlSrc)
	}
	if m.Has&FDlDst != 0 {
		if m.DlDstMask != (tenant.MAC{}) {
			add("dl_dst=%s/%s", m.DlDst, m.DlDstMask)
		} else {
			add("dl_dst=%s", m.DlDst)
		}
	}
	if m.Has&FDlType != 0 {
		add("dl_type=0x%04x", m.DlType)
	}
	v6 := m.DlType == tenant.EthIPv6
	if m.Has&FNwProto != 0 {
		add("nw_proto=%d", m.NwProto)
	}
	if m.Has&FNwSrc != 0 {
		if v6 {
			add("ipv6_src=%s", m.NwSrc)
		} else {
			add("nw_src=%s", m.NwSrc)
		}
	}
	if m.Has&FNwDst != 0 {
		if v6 {
			add("ipv6_dst=%s", m.NwDst)
		} else {
			add("nw_dst=%s", m.NwDst)
		}
	}
	portField := func(name string, v, mask uint16) {
		if mask == 0 || mask == 0xffff {
			add("%s=%d", name, v)
		} else {
			add("%s=%#x/%#x", name, v, mask)
		}
	}
	if m.Has&FTpSrc != 0 {
		portField("tp_src", m.TpSrc, m.TpSrcMask)
	}
	if m.Has&FTpDst != 0 {
		portField("tp_dst", m.TpDst, m.TpDstMask)
	}
	if m.Has&FICMPType != 0 {
		if v6 {
			add("icmpv6_type=%d", m.ICMPType)
		} else {
			add("icmp_type=%d", m.ICMPType)
		}
	}
	if m.Has&FArpSPA != 0 {
		add("arp_spa=%s", m.ArpSPA)
	}
	if m.Has&FArpSHA != 0 {
		add("arp_sha=%s", m.ArpSHA)
	}
	if m.Has&FNdTarget != 0 {
		add("nd_target=%s", m.NdTarget)
	}
	return strings.Join(p, ",")
}

// DiffLines compares two rendered flow sets line by line: the flows only in
// old (to delete) and only in new (to add).
func DiffLines(old, new string) (del, add []string) {
	have := map[string]bool{}
	for _, l := range strings.Split(old, "\n") {
		if l != "" {
			have[l] = true
		}
	}
	want := map[string]bool{}
	for _, l := range strings.Split(new, "\n") {
		if l == "" {
			continue
		}
		want[l] = true
		if !have[l] {
			add = append(add, l)
		}
	}
	for l := range have {
		if !want[l] {
			del = append(del, l)
		}
	}
	return del, add
}
