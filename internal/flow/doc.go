// Package flow compiles a validated tenant net (package tenant) into an
// OpenFlow 1.3 flow set for Open vSwitch, and interprets such a set in pure
// Go (Run) for property tests. It does no I/O: package ovs applies the set.
//
// The pipeline (tables):
//
//	 0 classify   in_port (+ dl_src, nw_src, arp_sha/spa: anti-spoofing) or
//	              uplink + 802.1Q tag -> reg0=TID, reg1=source subnet
//	10 l2         ARP and ND: flood or deliver inside the domain only
//	20 lookup     dl_dst inside the domain -> reg3=destination subnet,
//	              reg4=output port; unknown unicast -> uplinks; other
//	              broadcast/multicast dropped
//	24 conntrack  stateful domains: ct(zone=TID)
//	25 ct state   +est/+rel skip the perimeters, +new continues
//	30 source perimeter        rules of subnet reg1 (reg1=0: outside, passes)
//	35 destination perimeter   rules of subnet reg3 (reg3=0: outside, passes)
//	40 commit     stateful domains: ct(commit,zone=TID)
//	45 output     reg4 -> port (uplinks get the TID pushed as VLAN tag)
//
// Every table ends in an explicit drop. Rule k of a perimeter gets OpenFlow
// priority 60000-k, so no two rules of one perimeter share a priority and the
// evaluation order of package tenant is kept exactly. A rule's sets (MACs,
// prefixes, protocols, port ranges as value/mask blocks) expand to the cross
// product of flows, all with the rule's priority and a cookie that names it.
package flow
