// Package tenant is the tenant domain model of the 2018 paper (§III.A.1):
// TD = (TID, TNet, VMs, ACRs, Cons), its validation, and Decide, the pure-Go
// reference evaluator that every enforcement backend is tested against.
//
// # Model
//
// A Domain has a TID (constraint a: unique; it is also the 802.1Q tag of the
// domain on trunk ports and its conntrack zone, so it lies in 1..4094), a set
// of subnets (TSNet, Layer 2 broadcast domains), the VMs of each subnet, and
// the perimeter rule set ACR_i of each subnet. An ACR has a priority, source
// and destination MAC sets, source and destination IP prefixes, a protocol,
// source and destination port ranges and an action (pass or drop). MAC and IP
// entries may name a VM of the domain instead of spelling its address, as the
// paper writes "{VM1,VM2}.MAC". Entries are read one way only: one that spells
// an address, prefix or MAC is that, "any" and "*" are the wildcard, anything
// else is a VM's name; so VM names may not look like the others
// (AmbiguousName; RenameAmbiguous migrates old policies). Strict JSON
// (DecodeStrictJSON) refuses duplicate keys.
//
// # Semantics (what Decide implements and the compiler must reproduce)
//
//   - Each perimeter evaluates its rules in order: priority descending; on equal
//     priority drop before pass; then declaration order. The first match
//     decides; no match is drop (constraint d).
//   - (b) Traffic between VMs of subnets i and j of one domain passes only if
//     the perimeter of i and the perimeter of j both pass it. For i == j the
//     two checks are the same check.
//   - (c) Traffic between a VM of subnet i and an entity outside the domain
//     (reached through an uplink port) passes only if perimeter i passes it,
//     in either direction.
//   - (d) Everything else is dropped, and nothing ever crosses from one domain
//     to another: forwarding only looks up destinations inside the ingress
//     domain, and uplink traffic is tagged with the domain's TID.
//
// Ambiguity resolved so that the paper's Table 2 outcomes hold: the paper
// lists the rules that let subD1 reach VM3:22 only under subD2, yet (b) asks
// for a pass rule in both subnets' sets. We place an ACR on the perimeter of
// the subnet that declares it and also on the perimeter of every other subnet
// of the domain whose VMs it names explicitly (a VM name, a VM's MAC, or a
// host prefix equal to a VM's IP). Wildcards and wider prefixes do not export
// a rule. A rule that names a peer is therefore a bilateral agreement. With
// this, Table 2 gives: VM1->VM2 ping passes, VM1->VM3 ping is dropped,
// VM1->VM3:22 and its reply (srcport=22) pass.
//
// ARP and IPv6 neighbour discovery (ICMPv6 133-136) are Layer 2 plumbing, not
// subject to ACRs: they are delivered to every port of the domain (broadcast)
// or to the owner of the destination MAC inside the domain, never to another
// domain. Other broadcast and multicast frames are dropped.
//
// Anti-spoofing: a VM port only accepts untagged frames whose source MAC is
// the VM's MAC; IPv4 packets must carry the VM's IPv4 address and ARP must
// carry the VM's MAC and IPv4 address. IPv6 packets must come from the VM's
// IPv6 address or a link-local address (fe80::/10, not bound to the MAC,
// because guests derive it in several ways); router and neighbour
// solicitations may also come from :: (duplicate address detection); a
// neighbour advertisement must be for one of those addresses, so a VM
// cannot claim a neighbour's address (RVM.OwnsIPv6).
//
// In stateless mode (the paper's) replies need explicit reverse rules such as
// srcport=22. In stateful mode (opt-in per domain) IP packets of a connection
// whose first packet passed are passed without ACR evaluation (conntrack).
package tenant
