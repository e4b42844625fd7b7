// Package controller is the control plane's core: it authenticates callers
// (an admin token and per-tenant tokens), enforces that a tenant only ever
// sees and changes its own objects, validates every change against the
// whole tenant net, and distributes the result: a change is committed to
// the store first, with the next generation; then the controller locates
// the hosts of the VMs it touches (placement: the inventory record's host,
// else the default host), publishes the desired state of every host whose
// state changed through a node.Fleet, and waits (WithWait) for the hosts'
// statuses: ErrApply when a host refused it (the change stays stored and
// the host keeps its previous state), ErrPending when one has not
// answered. No node I/O happens inside a store transaction. DomainStatus
// and Hosts show per-object and per-host state, like Kubernetes'
// observedGeneration; Sink takes what the hosts report. A domain whose
// VMs sit on several hosts goes to each of them with the tunnel endpoints
// the other hosts reported (VXLAN between their bridges); a host that
// reports a new endpoint makes the controller publish again at once.
// Syscall monitoring policies (SetKMon) need the VM's RAM file and
// gdbstub socket in the inventory, as memory monitoring needs the RAM
// file.
//
// It also keeps the host inventory (package inventory): the admin leases
// switch ports to tenants and records each VM's host and host resources;
// a tenant's domain binds only ports leased to it, never the bridge's own,
// and its service policies take their host resources from the inventory,
// never from the tenant. The API (package api) is a thin HTTP layer over
// it.
package controller
