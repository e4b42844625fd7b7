package tenant

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// ErrInvalid is wrapped by every validation error; errors.Is(err, ErrInvalid)
// tells a caller the input, not the system, is at fault.
var ErrInvalid = errors.New("invalid tenant policy")

// ValidationError lists every problem found in a policy.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid tenant policy: " + strings.Join(e.Problems, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// MAC is an Ethernet address.
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// Multicast reports whether the group bit is set (broadcast included).
func (m MAC) Multicast() bool { return m[0]&1 == 1 }

// ParseMAC parses a 48-bit MAC in colon or dash form.
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return MAC{}, fmt.Errorf("%q is not a 48-bit MAC address", s)
	}
	return MAC(hw), nil
}

// Protocol numbers.
const (
	ProtoICMP  = 1
	ProtoTCP   = 6
	ProtoUDP   = 17
	ProtoICMP6 = 58
)

var protoByName = map[string]uint8{"": 0, "any": 0, "*": 0, "icmp": ProtoICMP, "tcp": ProtoTCP, "udp": ProtoUDP, "icmp6": ProtoICMP6}

// ProtoName is the policy name of protocol number p.
func ProtoName(p uint8) string {
	for k, v := range protoByName {
		if v == p && k != "" && k != "any" && k != "*" {
			return k
		}
	}
	if p == 0 {
		return "any"
	}
	return fmt.Sprint(p)
}

// Net is a validated set of domains with every reference resolved: the
// input of Decide and of the flow compiler.
type Net struct {
	Domains []*RDomain // by TID
	byPort  map[string]*RVM
	uplink  map[string]map[int]*RDomain // uplink port -> TID -> domain
}

// RDomain is a resolved Domain.
type RDomain struct {
	TID      int
	Name     string
	Tenant   string
	Stateful bool
	Uplinks  []string
	Subnets  []*RSubnet
	VMs      []*RVM
	Rules    []*Rule // every rule of the domain, in evaluation order
	byMAC    map[MAC]*RVM
}

// RSubnet is a resolved subnet with its ordered perimeter.
type RSubnet struct {
	ID        int    // unique in the Net, >= 1; 0 stands for "outside the domain"
	Bit       uint32 // 1 << index of the subnet in its domain
	Name      string
	Domain    *RDomain
	Perimeter []*Rule // evaluation order
}

// RVM is a resolved VM.
type RVM struct {
	VM
	HW     MAC
	Addr   netip.Addr
	Subnet *RSubnet
}

// RuleRef names a rule in its domain.
type RuleRef struct {
	TID    int    `json:"tid"`
	Subnet string `json:"subnet"` // the subnet that declares it
	Index  int    `json:"index"`  // position in that subnet's ACR list
	ID     string `json:"id,omitempty"`
}

func (r RuleRef) String() string {
	s := fmt.Sprintf("td%d/%s/acr%d", r.TID, r.Subnet, r.Index)
	if r.ID != "" {
		s += "(" + r.ID + ")"
	}
	return s
}

// Rule is a resolved ACR. Nil sets mean any.
type Rule struct {
	Ref      RuleRef
	Seq      int // global declaration order, for stable tie-breaking
	Priority int
	Action   Action
	SrcMAC   []MAC
	DstMAC   []MAC
	SrcIP    []netip.Prefix
	DstIP    []netip.Prefix
	Proto    uint8 // 0: any (tcp or udp when ports are set)
	SrcPort  PortRange
	DstPort  PortRange
	// Perimeters is the set of subnets (by Bit) whose perimeter holds the rule.
	Perimeters uint32
}

// HasPorts reports whether the rule restricts transport ports.
func (r *Rule) HasPorts() bool { return !r.SrcPort.Any() || !r.DstPort.Any() }

// Before reports whether r is evaluated before o on a perimeter.
func (r *Rule) Before(o *Rule) bool {
	if r.Priority != o.Priority {
		return r.Priority > o.Priority
	}
	if r.Action != o.Action {
		return r.Action == Drop
	}
	return r.Seq < o.Seq
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidName reports whether s is a valid object name.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// PortNameOK reports whether s can be a switch port name.
func PortNameOK(s string) bool {
	return len(s) > 0 && len(s) <= 15 && nameRE.MatchString(s)
}

type problems struct{ list []string }

func (p *problems) add(format string, a ...any) { p.list = append(p.list, fmt.Sprintf(format, a...)) }

// NewNet validates domains together (constraint a and port ownership span
// domains) and resolves every reference.
func NewNet(domains []Domain) (*Net, error) {
	var pr problems
	n := &Net{byPort: map[string]*RVM{}, uplink: map[string]map[int]*RDomain{}}
	seenTID := map[int]bool{}
	sid := 0
	seq := 0
	ds := slices.Clone(domains)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].TID < ds[j].TID })
	for i := range ds {
		d := &ds[i]
		where := fmt.Sprintf("domain %q (tid %d)", d.Name, d.TID)
		if d.TID < MinTID || d.TID > MaxTID {
			pr.add("%s: tid must be in %d..%d", where, MinTID, MaxTID)
		}
		if seenTID[d.TID] {
			pr.add("%s: tid %d is used by another domain (constraint a)", where, d.TID)
		}
		seenTID[d.TID] = true
		rd := resolveDomain(d, where, &pr, &sid, &seq)
		n.Domains = append(n.Domains, rd)
		for _, vm := range rd.VMs {
			if _, ok := n.byPort[vm.Port]; ok {
				// Say nothing of the other VM: it may be another tenant's.
				pr.add("%s: vm %q: port %q is already in use", where, vm.Name, vm.Port)
				continue
			}
			n.byPort[vm.Port] = vm
		}
	}
	for _, rd := range n.Domains {
		for _, u := range rd.Uplinks {
			if vm, ok := n.byPort[u]; ok {
				pr.add("domain %d: uplink %q is the port of vm %q", rd.TID, u, vm.Name)
			}
			if n.uplink[u] == nil {
				n.uplink[u] = map[int]*RDomain{}
			}
			n.uplink[u][rd.TID] = rd
		}
	}
	if len(pr.list) > 0 {
		return nil, &ValidationError{Problems: pr.list}
	}
	return n, nil
}

// Validate checks one domain on its own.
func (d Domain) Validate() error {
	_, err := NewNet([]Domain{d})
	return err
}

func resolveDomain(d *Domain, where string, pr *problems, sid, seq *int) *RDomain {
	rd := &RDomain{TID: d.TID, Name: d.Name, Tenant: d.Tenant, byMAC: map[MAC]*RVM{}}
	if !ValidName(d.Name) {
		pr.add("%s: name must be 1-63 letters, digits, '.', '_' or '-'", where)
	}
	switch d.Mode {
	case "", Stateless:
	case Stateful:
		rd.Stateful = true
	default:
		pr.add("%s: mode %q is neither stateless nor stateful", where, d.Mode)
	}
	seenUp := map[string]bool{}
	for _, u := range d.Uplinks {
		if !PortNameOK(u) {
			pr.add("%s: uplink %q is not a valid port name (1-15 characters)", where, u)
		}
		if seenUp[u] {
			pr.add("%s: uplink %q listed twice", where, u)
		}
		seenUp[u] = true
		rd.Uplinks = append(rd.Uplinks, u)
	}
	if len(d.Subnets) > MaxSubnets {
		pr.add("%s: %d subnets exceed the limit of %d per domain", where, len(d.Subnets), MaxSubnets)
	}
	byName := map[string]*RVM{}
	byIP := map[netip.Addr]*RVM{}
	subnets := map[string]bool{}
	for si := range d.Subnets {
		s := &d.Subnets[si]
		sw := fmt.Sprintf("%s: subnet %q", where, s.Name)
		if !ValidName(s.Name) {
			pr.add("%s: name must be 1-63 letters, digits, '.', '_' or '-'", sw)
		}
		if subnets[s.Name] {
			pr.add("%s: subnet name used twice", sw)
		}
		subnets[s.Name] = true
		*sid++
		rs := &RSubnet{ID: *sid, Bit: 1 << (si % MaxSubnets), Name: s.Name, Domain: rd}
		rd.Subnets = append(rd.Subnets, rs)
		var cidr netip.Prefix
		if s.CIDR != "" {
			p, err := netip.ParsePrefix(s.CIDR)
			switch {
			case err != nil:
				pr.add("%s: cidr %q is not an IP prefix", sw, s.CIDR)
			case p != p.Masked():
				pr.add("%s: cidr %q has host bits set (the prefix is %s)", sw, s.CIDR, p.Masked())
			}
			cidr = p.Masked()
		}
		for _, vm := range s.VMs {
			vw := fmt.Sprintf("%s: vm %q", sw, vm.Name)
			rv := &RVM{VM: vm, Subnet: rs}
			if !ValidName(vm.Name) {
				pr.add("%s: name must be 1-63 letters, digits, '.', '_' or '-'", vw)
			} else if why := AmbiguousName(vm.Name); why != "" {
				pr.add("%s: a VM name may not read as %s (rules would not say which they mean): name it otherwise, e.g. vm-%s (secaas acl migrate renames)", vw, why, vm.Name)
			}
			if _, dup := byName[vm.Name]; dup {
				pr.add("%s: vm name used twice in the domain", vw)
			}
			byName[vm.Name] = rv
			if vm.UUID != "" && !validUUID(vm.UUID) {
				pr.add("%s: uuid %q is not a UUID", vw, vm.UUID)
			}
			if m, err := ParseMAC(vm.MAC); err != nil {
				pr.add("%s: %v", vw, err)
			} else if m.Multicast() || m == (MAC{}) {
				pr.add("%s: mac %s is not a unicast address", vw, m)
			} else if other, dup := rd.byMAC[m]; dup {
				pr.add("%s: mac %s is also vm %q's", vw, m, other.Name)
			} else {
				rv.HW = m
				rd.byMAC[m] = rv
			}
			if a, err := netip.ParseAddr(vm.IP); err != nil || a.Zone() != "" {
				pr.add("%s: ip %q is not an IP address", vw, vm.IP)
			} else {
				a = a.Unmap()
				if cidr.IsValid() && !cidr.Contains(a) {
					pr.add("%s: ip %s is outside the subnet's cidr %s", vw, a, cidr)
				}
				if other, dup := byIP[a]; dup {
					pr.add("%s: ip %s is also vm %q's", vw, a, other.Name)
				}
				byIP[a] = rv
				rv.Addr = a
			}
			if vm.NAD != nil {
				if _, _, _, err := vm.NAD.Params(); err != nil {
					pr.add("%s: %v", vw, err)
				}
			}
			if vm.VMI != nil {
				if _, _, err := vm.VMI.Params(); err != nil {
					pr.add("%s: %v", vw, err)
				}
			}
			if vm.AV != nil {
				if _, err := vm.AV.Params(); err != nil {
					pr.add("%s: %v", vw, err)
				}
			}
			if vm.KMon != nil {
				if err := vm.KMon.Validate(); err != nil {
					pr.add("%s: %v", vw, err)
				}
			}
			if !PortNameOK(vm.Port) {
				pr.add("%s: port %q is not a valid port name (1-15 characters)", vw, vm.Port)
			} else if seenUp[vm.Port] {
				pr.add("%s: port %q is also an uplink", vw, vm.Port)
			}
			rd.VMs = append(rd.VMs, rv)
		}
	}
	// Rules need every VM of the domain to resolve names.
	var all []*Rule
	for si := range d.Subnets {
		s := &d.Subnets[si]
		rs := rd.Subnets[si]
		for i, a := range s.ACRs {
			*seq++
			r := resolveRule(a, RuleRef{TID: d.TID, Subnet: s.Name, Index: i, ID: a.ID}, *seq, rd, byName, byIP,
				acrWhere{where, s.Name, i}, pr)
			if r == nil {
				continue
			}
			r.Perimeters |= rs.Bit
			all = append(all, r)
		}
	}
	if len(all) > MaxRulesPerDomain {
		pr.add("%s: %d ACRs exceed the limit of %d per domain", where, len(all), MaxRulesPerDomain)
	}
	// One order serves every perimeter: Before is a total order, so the
	// relative order of two rules is the same on each perimeter they share.
	rd.Rules = sortRules(all)
	for _, rs := range rd.Subnets {
		for _, r := range all {
			if r.Perimeters&rs.Bit != 0 {
				rs.Perimeter = append(rs.Perimeter, r)
			}
		}
	}
	return rd
}

// sortRules sorts rules by Before, through one integer key per rule:
// falling priority, drop before pass, declaration order.
func sortRules(rules []*Rule) []*Rule {
	type keyed struct {
		k uint64
		r *Rule
	}
	ks := make([]keyed, len(rules))
	for i, r := range rules {
		k := uint64(MaxPriority-min(max(r.Priority, 0), MaxPriority)) << 40
		if r.Action != Drop {
			k |= 1 << 39
		}
		ks[i] = keyed{k | uint64(r.Seq)&(1<<39-1), r}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(a.k, b.k) })
	for i := range ks {
		rules[i] = ks[i].r
	}
	return rules
}

// acrWhere names an ACR in problems; it is formatted only when there is
// one.
type acrWhere struct {
	domain, subnet string
	i              int
}

func (w acrWhere) String() string {
	return fmt.Sprintf("%s: subnet %q: acr %d", w.domain, w.subnet, w.i)
}

func resolveRule(a ACR, ref RuleRef, seq int, rd *RDomain, byName map[string]*RVM, byIP map[netip.Addr]*RVM, where acrWhere, pr *problems) *Rule {
	n0 := len(pr.list)
	r := &Rule{Ref: ref, Seq: seq, Priority: a.Priority, Action: a.Action, SrcPort: a.SrcPort, DstPort: a.DstPort}
	if a.Priority < 0 || a.Priority > MaxPriority {
		pr.add("%s: priority %d is outside 0..%d", where, a.Priority, MaxPriority)
	}
	if a.Action != Pass && a.Action != Drop {
		pr.add("%s: action %q is neither pass nor drop", where, a.Action)
	}
	p, ok := protoByName[a.Proto]
	if !ok {
		p, ok = protoByName[strings.ToLower(a.Proto)]
	}
	if !ok {
		pr.add("%s: proto %q is not one of tcp, udp, icmp, icmp6, any", where, a.Proto)
	}
	r.Proto = p
	if r.HasPorts() && p != 0 && p != ProtoTCP && p != ProtoUDP {
		pr.add("%s: ports need proto tcp or udp (or none), not %s", where, a.Proto)
	}
	macs := func(field string, in []string) []MAC {
		var out []MAC
		for _, s := range in {
			s = strings.TrimSpace(s)
			if s == "*" || s == "any" {
				return nil
			}
			if vm, ok := byName[s]; ok {
				out = append(out, vm.HW)
				r.Perimeters |= vm.Subnet.Bit
				continue
			}
			m, err := ParseMAC(s)
			if err != nil {
				pr.add("%s: %s entry %q is neither a VM of the domain nor a MAC address", where, field, s)
				continue
			}
			if vm, ok := rd.byMAC[m]; ok {
				r.Perimeters |= vm.Subnet.Bit
			}
			out = append(out, m)
		}
		return out
	}
	ips := func(field string, in []string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range in {
			s = strings.TrimSpace(s)
			if s == "*" || s == "any" {
				return nil
			}
			if vm, ok := byName[s]; ok {
				if !vm.Addr.IsValid() {
					continue // reported on the VM
				}
				out = append(out, netip.PrefixFrom(vm.Addr, vm.Addr.BitLen()))
				r.Perimeters |= vm.Subnet.Bit
				continue
			}
			var pfx netip.Prefix
			if strings.Contains(s, "/") {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					pr.add("%s: %s entry %q is neither a VM of the domain nor an IP prefix", where, field, s)
					continue
				}
				pfx = p.Masked()
			} else {
				a, err := netip.ParseAddr(s)
				if err != nil || a.Zone() != "" {
					pr.add("%s: %s entry %q is neither a VM of the domain nor an IP prefix", where, field, s)
					continue
				}
				pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
			}
			if pfx.IsSingleIP() {
				if vm, ok := byIP[pfx.Addr()]; ok {
					r.Perimeters |= vm.Subnet.Bit
				}
			}
			out = append(out, pfx)
		}
		return out
	}
	r.SrcMAC = macs("srcmac", a.SrcMAC)
	r.DstMAC = macs("dstmac", a.DstMAC)
	r.SrcIP = ips("srcip", a.SrcIP)
	r.DstIP = ips("dstip", a.DstIP)
	if fam := families(r.SrcIP) & families(r.DstIP); len(r.SrcIP) > 0 && len(r.DstIP) > 0 && fam == 0 {
		pr.add("%s: srcip and dstip share no address family", where)
	}
	if fam := families(r.SrcIP) | families(r.DstIP); r.Proto == ProtoICMP && fam == famV6 || r.Proto == ProtoICMP6 && fam == famV4 {
		pr.add("%s: proto %s does not fit the rule's addresses", where, a.Proto)
	}
	if len(pr.list) > n0 {
		return nil
	}
	return r
}

const (
	famV4 = 1
	famV6 = 2
)

func families(ps []netip.Prefix) int {
	if len(ps) == 0 {
		return famV4 | famV6
	}
	f := 0
	for _, p := range ps {
		if p.Addr().Is4() {
			f |= famV4
		} else {
			f |= famV6
		}
	}
	return f
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func validUUID(s string) bool { return uuidRE.MatchString(s) }

// VMByPort returns the VM attached to switch port name.
func (n *Net) VMByPort(port string) (*RVM, bool) {
	vm, ok := n.byPort[port]
	return vm, ok
}

// VMByName finds a VM by name; tid 0 searches every domain (the first match
// in TID order wins).
func (n *Net) VMByName(tid int, name string) (*RVM, bool) {
	for _, d := range n.Domains {
		if tid != 0 && d.TID != tid {
			continue
		}
		for _, vm := range d.VMs {
			if vm.Name == name {
				return vm, true
			}
		}
	}
	return nil, false
}

// UplinkDomain returns the domain whose uplink port is port with tag vlan.
func (n *Net) UplinkDomain(port string, vlan int) (*RDomain, bool) {
	d, ok := n.uplink[port][vlan]
	return d, ok
}

// IsUplink reports whether port is an uplink of some domain.
func (n *Net) IsUplink(port string) bool { return len(n.uplink[port]) > 0 }

// VMByMAC finds the VM with MAC m inside d.
func (d *RDomain) VMByMAC(m MAC) (*RVM, bool) {
	vm, ok := d.byMAC[m]
	return vm, ok
}
