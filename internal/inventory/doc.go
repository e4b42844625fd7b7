// Package inventory is the host's own record of its switch ports: which
// tenant each port is leased to, the hypervisor host it is on (where the
// VM's services run), whether it is an uplink, and, for a VM's port, the
// host resources of that VM (its guest RAM file, QMP socket, gdbstub
// socket and disk). It
// is host data, set by the admin (or made from a libvirt domain's XML or
// Open vSwitch's external_ids: FromLibvirt, FromOVS), never by a tenant: a tenant's
// domain may bind only ports leased to its tenant, and a tenant's service
// policies (memory and syscall monitoring, HyperAV) take their host resources from
// the port's record, not from the tenant.
//
// The package is pure: types, validation, the ownership check and the
// importers (their input is parsed as untrusted, and fuzzed). The
// store keeps the records, the controller checks every change against
// them, and the agent opens the resources through package hostpath,
// beneath the host's configured roots.
package inventory
