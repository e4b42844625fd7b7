// Package agent is the node side: it owns one hypervisor host's Open vSwitch
// bridge, turns the desired state it is given (the tenant domains that live
// on this host) into flows (package flow), applies them atomically (package
// ovs), and keeps them there: a reconcile loop recompiles when ports come
// and go and repairs drift when someone edits the flow table by hand. It
// knows nothing of the API, the store or other hosts; it reports what it
// does as events.
package agent
