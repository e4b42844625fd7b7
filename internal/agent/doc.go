// Package agent is the node side: it owns one hypervisor host's Open vSwitch
// bridge, turns the desired state it is given (the tenant domains that live
// on this host, and the host inventory that says which RAM file, QMP socket
// and disk belong to each VM port) into flows (package flow) and per-VM
// services (anomaly detection, memory monitoring, HyperAV, syscall
// monitoring), applies the flows atomically (package ovs), and keeps them
// there.
//
// A change compiles through a flow.Cache (only new or moved rules are
// compiled, each domain's other flows are kept by a signature) while the
// switch's ports are read, and goes to the switch as the difference by
// rule, in one bundle. With TunnelIP set the bridge has a VXLAN port, and
// the domains' VMs on other hosts (the desired state's Remote) are
// reached through it.
//
// Keeping them: the reconcile loop watches the switch's flow table (an
// OpenFlow flow monitor) and also runs every interval; each pass compares
// a hash of the whole table (no statistics) with the hash recorded when the
// table last matched, runs the full difference only when it changed, and
// restores the desired flows in one bundle; it reads and compares the
// switch without holding the agent, so a change never waits for it, and
// what it found counts only if no change went on meanwhile. It recompiles
// when ports come and go. Start installs nothing: the first Apply changes
// the switch only where it differs, so a restart drops no packet.
//
// Anomaly detection (nad.go) mirrors a VM's port to a veth, captures it
// with AF_PACKET and runs the same pipeline as the offline tools
// (nad.Monitor) with the policy's registered detector; a detector that
// needs a model loads it by plain file name from ModelDir (secaasd
// --nad-models), and a missing or corrupt one is a nad.error event without
// the host path.
//
// Syscall monitoring (kmon.go) injects the monitor into a VM's guest
// through its gdbstub socket, changes its rules in place, reports its
// events and repairs tampering every 0.5 s, tries a failed injection
// again, and removes it in the background when the policy goes (the VM's
// next monitor waits for that). While it is there, memory monitoring
// (vmi.go) knows its region, so the redirected dispatch reads as secaas's
// own hook; and the packets anomaly detection captures also tell memory
// monitoring which of the VM's ports answer, for its cross-view with the
// sockets in the VM's memory.
//
// Host resources are opened through Host (package hostpath), confined to
// the host's configured roots; a service whose resources are missing from
// the inventory waits and says so. Events carry no host paths. The agent
// knows nothing of the API, the store or other hosts; it reports what it
// does as events.
//
// Follow is an autonomous agent's loop over the node contract (package
// node): it enforces the desired state it persisted before it hears from
// the controller, applies each newer one (ApplyDesired: per-domain status,
// services only for the VMs placed on this host), tries a failed one
// again, answers calls (Handle), and reports through a Reporter that
// never blocks the agent and never drops an event.
package agent
