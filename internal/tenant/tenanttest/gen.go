package tenanttest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"secaas/internal/tenant"
)

// Options shape a random net.
type Options struct {
	Domains       int  // number of domains (default 2)
	MaxSubnets    int  // per domain (default 3)
	MaxVMs        int  // per subnet (default 3)
	MaxRules      int  // per subnet (default 6)
	Uplinks       bool // give some domains a shared uplink port
	AllowStateful bool
	PortPrefix    string // switch port names are PortPrefix+N (default "p")
}

func (o *Options) defaults() {
	if o.Domains == 0 {
		o.Domains = 2
	}
	if o.MaxSubnets == 0 {
		o.MaxSubnets = 3
	}
	if o.MaxVMs == 0 {
		o.MaxVMs = 3
	}
	if o.MaxRules == 0 {
		o.MaxRules = 6
	}
	if o.PortPrefix == "" {
		o.PortPrefix = "p"
	}
}

// UplinkPort is the name of the shared uplink in generated nets.
const UplinkPort = "up0"

// Ports is a small set of transport ports rules and packets draw from, so
// that they meet often.
var Ports = []uint16{22, 23, 80, 443, 1000, 40000}

// Net builds a random valid set of domains. Every domain uses the same
// 10.0.0.0/24 addressing and MACs from a small shared pool, so that
// isolation cannot rest on addresses being distinct.
func Net(r *rand.Rand, o Options) []tenant.Domain {
	o.defaults()
	var ds []tenant.Domain
	port := 0
	for di := 0; di < o.Domains; di++ {
		d := tenant.Domain{TID: 100 + di*7 + r.IntN(5), Name: fmt.Sprintf("td%d", di), Tenant: fmt.Sprintf("t%d", di)}
		if o.AllowStateful && r.IntN(2) == 0 {
			d.Mode = tenant.Stateful
		}
		if o.Uplinks && r.IntN(2) == 0 {
			d.Uplinks = []string{UplinkPort}
		}
		var names []string
		v6 := map[string]bool{}
		ipUsed := map[int]bool{}
		macUsed := map[int]bool{}
		ns := 1 + r.IntN(o.MaxSubnets)
		for si := 0; si < ns; si++ {
			s := tenant.Subnet{Name: fmt.Sprintf("s%d", si)}
			nv := 1 + r.IntN(o.MaxVMs)
			for vi := 0; vi < nv; vi++ {
				ip := 1 + r.IntN(20)
				for ipUsed[ip] {
					ip = 1 + r.IntN(20)
				}
				ipUsed[ip] = true
				mac := 1 + r.IntN(20)
				for macUsed[mac] {
					mac = 1 + r.IntN(20)
				}
				macUsed[mac] = true
				port++
				name := fmt.Sprintf("v%d_%d_%d", di, si, vi)
				names = append(names, name)
				addr := fmt.Sprintf("10.0.0.%d", ip)
				if r.IntN(4) == 0 {
					addr = fmt.Sprintf("fd00::%x", ip)
				}
				v6[name] = strings.Contains(addr, ":")
				s.VMs = append(s.VMs, tenant.VM{Name: name, MAC: fmt.Sprintf("02:00:00:00:00:%02x", mac),
					IP: addr, Port: fmt.Sprintf("%s%d", o.PortPrefix, port)})
			}
			d.Subnets = append(d.Subnets, s)
		}
		for si := range d.Subnets {
			nr := r.IntN(o.MaxRules + 1)
			for k := 0; k < nr; k++ {
				d.Subnets[si].ACRs = append(d.Subnets[si].ACRs, rule(r, names, v6))
			}
		}
		ds = append(ds, d)
	}
	return ds
}

// rule draws an ACR; its IP sets stay in one address family (v6 tells
// which VM names are IPv6).
func rule(r *rand.Rand, names []string, v6 map[string]bool) tenant.ACR {
	fam := r.IntN(4) == 0 // IPv6
	var famNames []string
	for _, n := range names {
		if v6[n] == fam {
			famNames = append(famNames, n)
		}
	}
	a := tenant.ACR{Priority: r.IntN(8), Action: tenant.Pass}
	if r.IntN(3) == 0 {
		a.Action = tenant.Drop
	}
	pick := func() []string {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []string{fmt.Sprintf("02:00:00:00:00:%02x", 1+r.IntN(20))}
		}
		var out []string
		for n := 1 + r.IntN(2); n > 0; n-- {
			out = append(out, names[r.IntN(len(names))])
		}
		return out
	}
	pickIP := func() []string {
		switch r.IntN(5) {
		case 0, 1:
			return nil
		case 2:
			return []string{map[bool]string{false: "10.0.0.0/28", true: "fd00::/124"}[fam]}
		case 3:
			return []string{fmt.Sprintf(map[bool]string{false: "10.0.0.%d", true: "fd00::%x"}[fam], 1+r.IntN(20))}
		}
		if len(famNames) == 0 {
			return nil
		}
		return []string{famNames[r.IntN(len(famNames))]}
	}
	a.SrcMAC, a.DstMAC = pick(), pick()
	a.SrcIP, a.DstIP = pickIP(), pickIP()
	switch r.IntN(5) {
	case 0:
		a.Proto = "tcp"
	case 1:
		a.Proto = "udp"
	case 2:
		a.Proto = map[bool]string{false: "icmp", true: "icmp6"}[fam]
	}
	if a.Proto != "icmp" && a.Proto != "icmp6" {
		if r.IntN(3) == 0 {
			p := Ports[r.IntN(len(Ports))]
			a.DstPort = tenant.PortRange{Lo: p, Hi: p}
		}
		if r.IntN(4) == 0 {
			a.SrcPort = tenant.PortRange{Lo: 1000, Hi: 1000 + uint16(r.IntN(40000))}
		}
	}
	return a
}

// Packet draws a packet that is usually well formed and usually between
// VMs, sometimes spoofed, tagged, broadcast or aimed at another domain.
func Packet(r *rand.Rand, n *tenant.Net) tenant.Packet {
	var vms []*tenant.RVM
	for _, d := range n.Domains {
		vms = append(vms, d.VMs...)
	}
	src := vms[r.IntN(len(vms))]
	dst := vms[r.IntN(len(vms))]
	p := tenant.Packet{InPort: src.Port, EthSrc: src.HW, EthDst: dst.HW, EthType: tenant.EthIPv4,
		Src: src.Addr, Dst: dst.Addr, Proto: tenant.ProtoTCP,
		SrcPort: Ports[r.IntN(len(Ports))], DstPort: Ports[r.IntN(len(Ports))], ICMPType: 8}
	if n.IsUplink(UplinkPort) && r.IntN(5) == 0 {
		d := n.Domains[r.IntN(len(n.Domains))]
		p.InPort, p.VLAN = UplinkPort, d.TID
		p.EthSrc = tenant.MAC{2, 0xee, 0, 0, 0, byte(r.IntN(3))}
		p.Src = netip.MustParseAddr("192.0.2.1")
		if r.IntN(4) == 0 {
			p.VLAN = 1 + r.IntN(4094)
		}
	}
	switch r.IntN(10) {
	case 0:
		p.Proto, p.SrcPort, p.DstPort = tenant.ProtoICMP, 0, 0
	case 1:
		p.Proto = tenant.ProtoUDP
	case 2:
		p.EthType, p.Proto, p.SrcPort, p.DstPort = tenant.EthARP, 0, 0, 0
		p.ARPSHA, p.ARPSPA = p.EthSrc, p.Src
		if !p.Src.Is4() { // an IPv6 VM has no ARP address: it can only spoof one
			p.ARPSPA = netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + r.IntN(20))})
		}
		p.Src, p.Dst = netip.Addr{}, netip.Addr{}
		if r.IntN(2) == 0 {
			p.EthDst = tenant.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		}
	case 3:
		p.EthSrc = tenant.MAC{2, 0, 0, 0, 0, byte(1 + r.IntN(20))} // maybe spoofed
	case 4:
		p.Src = netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + r.IntN(20))}) // maybe spoofed
	case 5:
		p.EthDst = tenant.MAC{2, 0xee, 0, 0, 0, 1} // outside: to the uplink if any
		p.Dst = netip.MustParseAddr("192.0.2.1")
	case 6:
		p.EthType, p.Proto, p.ICMPType, p.SrcPort, p.DstPort = tenant.EthIPv6, tenant.ProtoICMP6, uint8(133+r.IntN(5)), 0, 0
		p.Src, p.Dst = v6Source(r, src), netip.MustParseAddr("ff02::1")
		if p.ICMPType == tenant.NDNeighborSolicit || p.ICMPType == tenant.NDNeighborAdvert {
			p.NDTarget = v6Source(r, vms[r.IntN(len(vms))])
		}
		if r.IntN(2) == 0 {
			p.EthDst = tenant.MAC{0x33, 0x33, 0, 0, 0, 1}
		}
	case 7:
		p.VLAN = 1 + r.IntN(4094)
	case 8:
		p.EthType, p.Src = tenant.EthIPv6, v6Source(r, src)
		if dst.Addr.Is4() {
			p.Dst = netip.MustParseAddr("fe80::2")
		}
	}
	if p.EthType == tenant.EthIPv4 && p.Src.Is6() {
		p.EthType = tenant.EthIPv6 // the VM's own family; case 4 still spoofs with IPv4
	}
	if p.EthType == tenant.EthIPv6 && p.Proto == tenant.ProtoICMP {
		p.Proto = tenant.ProtoICMP6
	}
	// A packet's addresses share its family (the destination VM may be of
	// the other one: then the packet carries an address nobody owns).
	switch {
	case p.EthType == tenant.EthIPv4 && p.Dst.IsValid() && !p.Dst.Is4():
		p.Dst = netip.MustParseAddr("192.0.2.9")
	case p.EthType == tenant.EthIPv6 && p.Dst.IsValid() && !p.Dst.Is6():
		p.Dst = netip.MustParseAddr("2001:db8::9")
	}
	p.Established = r.IntN(4) == 0
	return p
}

// v6Source draws an IPv6 source a VM might send from: usually one it owns
// (its address if IPv6, a link-local one), sometimes the unspecified
// address or another's address (spoofed).
func v6Source(r *rand.Rand, vm *tenant.RVM) netip.Addr {
	switch r.IntN(5) {
	case 0:
		return netip.IPv6Unspecified()
	case 1:
		return netip.MustParseAddr(fmt.Sprintf("fd00::%x", 1+r.IntN(20))) // maybe spoofed
	case 2:
		if vm.Addr.Is6() {
			return vm.Addr
		}
	}
	return netip.MustParseAddr(fmt.Sprintf("fe80::%x", 1+r.IntN(20)))
}
