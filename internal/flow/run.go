package flow

import (
	"fmt"
	"net/netip"

	"secaas/internal/tenant"
)

// Result is what the pipeline did with a packet.
type Result struct {
	Out   []uint32 // ports the packet left by, in action order
	VLAN  []int    // the packet's tag at each output (0: untagged)
	Tun   []Tun    // the tunnel key and endpoint set at each output (zero: none)
	Trace []*Flow  // the flows that matched, in order
}

// MaxSteps bounds a pipeline walk (resubmission loops in a hand-written set).
const MaxSteps = 64

// Run interprets the flow set on p the way Open vSwitch does for the subset
// of OpenFlow the compiler emits: highest priority match per table, actions
// in order, table-miss drops, output to the ingress port is skipped. It
// reports an error when two matching flows share the highest priority
// (undefined in OpenFlow) or the walk does not end.
func (s *Set) Run(p tenant.Packet, ports Ports) (Result, error) {
	return s.RunTunnel(p, ports, Tun{})
}

// Tun is a packet's tunnel metadata: the key, and the endpoint it came
// from (on input) or goes to (on output).
type Tun struct {
	ID   uint32
	Addr netip.Addr
}

// RunTunnel runs p as Run does, arriving with tunnel metadata in (from a
// tunnel port: p.InPort names it).
func (s *Set) RunTunnel(p tenant.Packet, ports Ports, in Tun) (Result, error) {
	inPort, ok := ports[p.InPort]
	if !ok {
		return Result{}, nil
	}
	st := &runState{set: s, p: &p, inPort: inPort, vlan: p.VLAN, tunIn: in}
	err := st.table(0, 0)
	return st.res, err
}

type runState struct {
	set    *Set
	p      *tenant.Packet
	inPort uint32
	regs   [NumRegs]uint32
	vlan   int
	ct     uint8
	tunIn  Tun // as the packet arrived
	tunOut Tun // as set by SetTunnel
	steps  int
	res    Result
}

// table looks up one table and runs the flow's actions; goto_table moves
// on, resubmit runs a table and comes back.
func (st *runState) table(t uint8, depth int) error {
	for {
		st.steps++
		if st.steps > MaxSteps || depth > 8 {
			return fmt.Errorf("run: more than %d tables visited", MaxSteps)
		}
		f, err := st.set.lookup(t, st.p, st.inPort, st.vlan, &st.regs, st.ct, st.tunIn)
		if err != nil || f == nil {
			return err
		}
		st.res.Trace = append(st.res.Trace, f)
		next := -1
		for _, a := range f.Actions {
			switch a.Kind {
			case SetReg:
				st.regs[a.Reg] = a.Value
			case Move:
				st.regs[a.Value] = st.regs[a.Reg]
			case Resubmit:
				if err := st.table(uint8(a.Value), depth+1); err != nil {
					return err
				}
			case Output:
				if a.Value != st.inPort {
					st.res.Out = append(st.res.Out, a.Value)
					st.res.VLAN = append(st.res.VLAN, st.vlan)
					st.res.Tun = append(st.res.Tun, st.tunOut)
				}
			case Goto:
				next = int(a.Value)
			case PushVLAN:
				st.vlan = int(a.Value)
			case PopVLAN:
				st.vlan = 0
			case SetTunnel:
				st.tunOut = Tun{ID: a.Value, Addr: a.Addr}
			case CT:
				if !a.Commit {
					st.ct = CTTrk | CTNew
					if st.p.Established {
						st.ct = CTTrk | CTEst
					}
					next = int(a.Value)
				}
			}
		}
		if next < 0 {
			return nil
		}
		t = uint8(next)
	}
}

func (s *Set) lookup(table uint8, p *tenant.Packet, inPort uint32, vlan int, regs *[NumRegs]uint32, ct uint8, tun Tun) (*Flow, error) {
	var best *Flow
	for i := range s.Flows {
		f := &s.Flows[i]
		if f.Table != table || !f.Match.matches(p, inPort, vlan, regs, ct, tun) {
			continue
		}
		switch {
		case best == nil || f.Priority > best.Priority:
			best = f
		case f.Priority == best.Priority && (f.Cookie == 0 || f.Cookie != best.Cookie):
			// Overlapping flows of one rule share its action; anything else
			// is undefined in OpenFlow.
			return nil, fmt.Errorf("run: table %d: flows %q and %q both match at priority %d", table, best, f, f.Priority)
		}
	}
	return best, nil
}

func (m *Match) matches(p *tenant.Packet, inPort uint32, vlan int, regs *[NumRegs]uint32, ct uint8, tun Tun) bool {
	h := m.Has
	for i := range m.Regs {
		if h&(FReg0<<i) == 0 {
			continue
		}
		mask := m.RegMasks[i]
		if mask == 0 {
			mask = ^uint32(0)
		}
		if regs[i]&mask != m.Regs[i]&mask {
			return false
		}
	}
	switch {
	case h&FCTState != 0 && (ct&m.CTSet != m.CTSet || ct&m.CTClear != 0):
		return false
	case h&FInPort != 0 && inPort != m.InPort:
		return false
	case h&FTunID != 0 && tun.ID != m.TunID:
		return false
	case h&FTunSrc != 0 && tun.Addr != m.TunSrc:
		return false
	case h&FUntagged != 0 && vlan != 0:
		return false
	case h&FVLAN != 0 && vlan != int(m.VLAN):
		return false
	case h&FDlSrc != 0 && p.EthSrc != m.DlSrc:
		return false
	case h&FDlDst != 0 && !macMatch(p.EthDst, m.DlDst, m.DlDstMask):
		return false
	case h&FDlType != 0 && p.EthType != m.DlType:
		return false
	}
	isIP := p.EthType == tenant.EthIPv4 || p.EthType == tenant.EthIPv6
	switch {
	case h&FNwProto != 0 && (!isIP || p.Proto != m.NwProto):
		return false
	case h&FNwSrc != 0 && (!isIP || !prefixMatch(m.NwSrc, p.Src)):
		return false
	case h&FNwDst != 0 && (!isIP || !prefixMatch(m.NwDst, p.Dst)):
		return false
	case h&FTpSrc != 0 && p.SrcPort&mask16(m.TpSrcMask) != m.TpSrc:
		return false
	case h&FTpDst != 0 && p.DstPort&mask16(m.TpDstMask) != m.TpDst:
		return false
	case h&FICMPType != 0 && p.ICMPType != m.ICMPType:
		return false
	case h&FArpSPA != 0 && p.ARPSPA != m.ArpSPA:
		return false
	case h&FArpSHA != 0 && p.ARPSHA != m.ArpSHA:
		return false
	case h&FNdTarget != 0 && !prefixMatch(m.NdTarget, p.NDTarget):
		return false
	}
	return true
}

func mask16(m uint16) uint16 {
	if m == 0 {
		return 0xffff
	}
	return m
}

func macMatch(a, v, mask tenant.MAC) bool {
	if mask == (tenant.MAC{}) {
		return a == v
	}
	for i := range a {
		if a[i]&mask[i] != v[i]&mask[i] {
			return false
		}
	}
	return true
}

func prefixMatch(p netip.Prefix, a netip.Addr) bool { return a.IsValid() && p.Contains(a) }
