// Package ovs drives a real Open vSwitch bridge with the userspace (netdev)
// datapath through its own command-line tools (ovs-vsctl, ovs-ofctl,
// ovs-appctl): it makes sure the bridge exists with fail_mode=secure, reads
// port numbers, replaces the whole flow table atomically in one OpenFlow
// bundle, reports drift against a desired flow set, watches the flow table
// for changes by anyone (Monitor: OpenFlow flow monitoring), and asks the
// switch to trace a packet (ofproto/trace). Flow sets come from package
// flow. Changes go as one bundle of the flows that differ (Modify), and a
// VXLAN port whose key and remote endpoint the flows set (EnsureTunnel)
// joins bridges of different hosts. Every ovs-ofctl call says --no-names,
// which spares a query of all tables' features per call. Private
// instances (StartPrivate) run beside the host's switch, also inside a
// network namespace (package lab's hypervisors).
package ovs
