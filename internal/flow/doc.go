// Package flow compiles a validated tenant net (package tenant) into an
// OpenFlow 1.3 flow set for Open vSwitch, and interprets such a set in pure
// Go (Run) for property tests. It does no I/O: package ovs applies the set.
//
// The pipeline (tables):
//
//	 0 classify   in_port (+ dl_src, nw_src/ipv6_src, arp_sha/spa,
//	              nd_target: anti-spoofing) or
//	              uplink + 802.1Q tag or
//	              tunnel + tun_id=TID + tun_src + dl_src of a remote VM
//	              -> reg0=TID, reg1=source subnet bit
//	10 l2         ARP and ND: flood or deliver inside the domain only
//	              (to the tunnel too, unless it came from there or from
//	              an uplink)
//	20 lookup     dl_dst inside the domain -> reg3=destination subnet bit,
//	              reg4=output port (a remote VM: the tunnel, with its
//	              host's endpoint and key TID); unknown unicast -> uplinks; other
//	              broadcast/multicast dropped
//	24 conntrack  stateful domains: ct(zone=TID)
//	25 ct state   +est/+rel skip the perimeters, +new continues
//	30 perimeters reg5=reg1, resubmit(,31), reg7=reg6, reg6=0,
//	              reg5=reg3, resubmit(,31), goto 32
//	31 perimeter  the domain's rules; a rule matches reg5 (one subnet bit)
//	              against the set of perimeters it sits on with one masked
//	              match, and pass sets reg6=1 (reg5=0, outside, passes)
//	32 verdict    reg6=1 and reg7=1 (both perimeters passed) -> 40
//	40 commit     stateful domains: ct(commit,zone=TID)
//	45 output     reg4 -> port (uplinks get the TID pushed as VLAN tag)
//
// Every table ends in an explicit drop. Rule k of a domain (in the tenant
// package's total order) gets OpenFlow priority 60000-k, so no two rules
// share a priority and every perimeter sees its rules in exactly the
// oracle's order. A rule's sets (MACs, prefixes, protocols, port ranges as
// value/mask blocks) expand to the cross product of flows, all with the
// rule's priority and a cookie that names it; a rule costs those flows once,
// however many perimeters it sits on.
//
// A domain spanning hosts (CompileWith, Tunnels) compiles on each host
// with its local ports and, for its VMs elsewhere, the VXLAN endpoint of
// their host: the sender evaluates both perimeters, the receiver admits
// the domain's key from the source VM's host only and evaluates them
// again; Run and RunTunnel walk a packet across both hosts in tests.
//
// Cache compiles through a per-rule cache: a rule whose content,
// priority and perimeters did not change keeps its flows and their text,
// and Delta gives the switch's change by rule, so one ACR added to ten
// thousand costs one rule's compilation (with priorities kept stable).
package flow
