// Package controller is the control plane's core: it authenticates callers
// (an admin token and per-tenant tokens), enforces that a tenant only ever
// sees and changes its own objects, validates every change against the
// whole tenant net, and moves the store and the node together: a change is
// committed only if the node applied it, otherwise both stay as they were.
//
// It also keeps the host inventory (package inventory): the admin leases
// switch ports to tenants and records each VM's host resources; a tenant's
// domain binds only ports leased to it, never the bridge's own, and its
// service policies take their host resources from the inventory, never
// from the tenant. The API (package api) is a thin HTTP layer over it.
package controller
