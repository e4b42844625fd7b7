package tenant

import (
	"fmt"
	"net/netip"
	"strings"
)

// A rule's address and MAC fields hold VM names, addresses, prefixes,
// MACs and the wildcards "any" and "*". They are read one way only: a VM
// name may not look like any of the others (AmbiguousName), so a name can
// never change what an address in a rule means.

// AmbiguousName says why name cannot be a VM's name ("" if it can): it
// reads as an IP address, an IP prefix, a MAC address or a wildcard.
func AmbiguousName(name string) string {
	s := strings.TrimSpace(name)
	switch {
	case strings.EqualFold(s, "any") || s == "*":
		return "a wildcard"
	case isAddr(s):
		return "an IP address"
	case strings.Contains(s, "/") && isPrefix(s):
		return "an IP prefix"
	}
	if _, err := ParseMAC(s); err == nil {
		return "a MAC address"
	}
	return ""
}

func isAddr(s string) bool   { _, err := netip.ParseAddr(s); return err == nil }
func isPrefix(s string) bool { _, err := netip.ParsePrefix(s); return err == nil }

// RenameAmbiguous renames the VMs whose names AmbiguousName refuses to
// "vm-NAME" (with a number if that is taken). A rule entry is then read
// as what it spells: an entry of an address field that is an address or
// prefix now means that address (before, a VM of that name took
// precedence, so a drop rule written for the address missed the host
// there); only entries that can only have meant the VM (an IP-like name
// in a MAC field, a MAC-like name in an address field) follow the rename.
// "any" stays the wildcard. It returns what it changed, one line each.
func RenameAmbiguous(d *Domain) []string {
	taken := map[string]bool{}
	for _, s := range d.Subnets {
		for _, vm := range s.VMs {
			taken[vm.Name] = true
		}
	}
	renamed := map[string]string{}
	var out []string
	for si := range d.Subnets {
		for vi := range d.Subnets[si].VMs {
			vm := &d.Subnets[si].VMs[vi]
			if AmbiguousName(vm.Name) == "" {
				continue
			}
			base := "vm-" + strings.ReplaceAll(strings.ReplaceAll(vm.Name, ":", "-"), "/", "-")
			if base == "vm-*" {
				base = "vm-star"
			}
			if len(base) > 63 {
				base = base[:63]
			}
			name := base
			for i := 2; taken[name]; i++ {
				name = fmt.Sprintf("%s-%d", base[:min(len(base), 59)], i)
			}
			taken[name] = true
			if !strings.EqualFold(vm.Name, "any") && vm.Name != "*" {
				renamed[vm.Name] = name
			}
			out = append(out, fmt.Sprintf("domain %d: vm %s -> %s", d.TID, vm.Name, name))
			vm.Name = name
		}
	}
	isMAC := func(e string) bool { _, err := ParseMAC(e); return err == nil }
	isIP := func(e string) bool { return isAddr(e) || isPrefix(e) }
	for si := range d.Subnets {
		for ai := range d.Subnets[si].ACRs {
			a := &d.Subnets[si].ACRs[ai]
			for _, f := range []struct {
				field *[]string
				own   func(string) bool // what the field's own entries look like
			}{{&a.SrcMAC, isMAC}, {&a.DstMAC, isMAC}, {&a.SrcIP, isIP}, {&a.DstIP, isIP}} {
				for i, e := range *f.field {
					e = strings.TrimSpace(e)
					n, ok := renamed[e]
					if !ok {
						continue
					}
					if f.own(e) {
						out = append(out, fmt.Sprintf("domain %d: subnet %s acr %d: %q now means the address it spells, not vm %s", d.TID, d.Subnets[si].Name, ai, e, n))
						continue
					}
					(*f.field)[i] = n
				}
			}
		}
	}
	return out
}

// MaskPrefixes stores the subnets' prefixes masked, as they were always
// enforced ("10.0.0.9/24" becomes "10.0.0.0/24"), and says what it
// changed, one line each.
func MaskPrefixes(d *Domain) []string {
	var out []string
	for si := range d.Subnets {
		s := &d.Subnets[si]
		if p, err := netip.ParsePrefix(s.CIDR); err == nil && p != p.Masked() {
			out = append(out, fmt.Sprintf("domain %d: subnet %s cidr %s -> %s", d.TID, s.Name, s.CIDR, p.Masked()))
			s.CIDR = p.Masked().String()
		}
	}
	return out
}

// CheckAddressing checks what NewNet leaves to changes of one domain, so
// that stored domains of earlier versions still load: no VM sits on its
// subnet's network address or IPv4 broadcast address.
func CheckAddressing(d Domain) error {
	var pr problems
	for _, s := range d.Subnets {
		p, err := netip.ParsePrefix(s.CIDR)
		if err != nil {
			continue // NewNet reports it
		}
		p = p.Masked()
		for _, vm := range s.VMs {
			a, err := netip.ParseAddr(vm.IP)
			if err != nil {
				continue
			}
			a = a.Unmap()
			where := fmt.Sprintf("domain %q (tid %d): subnet %q: vm %q", d.Name, d.TID, s.Name, vm.Name)
			if a == p.Addr() && p.Bits() < a.BitLen()-1 {
				pr.add("%s: ip %s is the network address of %s", where, a, p)
			}
			if a.Is4() && p.Bits() < 31 && a == lastAddr(p) {
				pr.add("%s: ip %s is the broadcast address of %s", where, a, p)
			}
		}
	}
	if len(pr.list) > 0 {
		return &ValidationError{Problems: pr.list}
	}
	return nil
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
