// Package ovs drives a real Open vSwitch bridge with the userspace (netdev)
// datapath through its own command-line tools (ovs-vsctl, ovs-ofctl,
// ovs-appctl): it makes sure the bridge exists with fail_mode=secure, reads
// port numbers, replaces the whole flow table atomically in one OpenFlow
// bundle, reports drift against a desired flow set, watches the flow table
// for changes by anyone (Monitor: OpenFlow flow monitoring), and asks the
// switch to trace a packet (ofproto/trace). Flow sets come from package
// flow. Private instances (StartPrivate) run beside the host's switch.
package ovs
