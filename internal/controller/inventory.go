package controller

import (
	"context"
	"fmt"
	"slices"

	"secaas/internal/inventory"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// Ports lists the host inventory: every record for the admin; for a
// tenant, the ports leased to it, without host paths.
func (c *Controller) Ports(ctx context.Context, who Caller) ([]inventory.Port, error) {
	var all []inventory.Port
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { all, err = tx.Ports(); return err }); err != nil {
		return nil, err
	}
	if who.Admin {
		return all, nil
	}
	out := []inventory.Port{}
	for _, p := range all {
		if p.Tenant == who.Tenant {
			out = append(out, p.Public())
		}
	}
	return out, nil
}

// Port returns one record, as Ports shows it; another tenant's port is
// not found.
func (c *Controller) Port(ctx context.Context, who Caller, name string) (inventory.Port, error) {
	var p inventory.Port
	if err := c.st.View(ctx, func(tx *store.Tx) (err error) { p, err = tx.Port(name); return err }); err != nil {
		return p, err
	}
	if who.Admin {
		return p, nil
	}
	if p.Tenant != who.Tenant {
		return inventory.Port{}, fmt.Errorf("port %q: %w", name, ErrNotFound)
	}
	return p.Public(), nil
}

// boundBy names the domain that binds port, and whether as an uplink.
func boundBy(all []tenant.Domain, port string) (d tenant.Domain, uplink, ok bool) {
	for _, d := range all {
		if slices.Contains(d.Uplinks, port) {
			return d, true, true
		}
		for _, s := range d.Subnets {
			for _, vm := range s.VMs {
				if vm.Port == port {
					return d, false, true
				}
			}
		}
	}
	return tenant.Domain{}, false, false
}

// PutPort creates or replaces an inventory record (admin). A port a
// domain binds keeps its tenant and its kind (VM port or uplink); its
// host resources may change, and the node restarts the VM's services.
func (c *Controller) PutPort(ctx context.Context, who Caller, p inventory.Port) (inventory.Port, error) {
	if !who.Admin {
		return p, ErrForbidden
	}
	if err := p.Validate(c.Host); err != nil {
		return p, err
	}
	return p, c.commitPorts(ctx, "port.updated", p.Tenant, p.Name, func(all []tenant.Domain, ports inventory.Ports) error {
		if d, uplink, ok := boundBy(all, p.Name); ok {
			if d.Tenant != p.Tenant || uplink != p.Uplink {
				return fmt.Errorf("port %q is bound by domain %d of tenant %q: its tenant and kind stay while it is bound: %w", p.Name, d.TID, d.Tenant, ErrConflict)
			}
		}
		ports[p.Name] = p
		return nil
	}, func(tx *store.Tx) error { return tx.PutPort(p) })
}

// DeletePort removes a record no domain binds (admin).
func (c *Controller) DeletePort(ctx context.Context, who Caller, name string) error {
	if !who.Admin {
		return ErrForbidden
	}
	return c.commitPorts(ctx, "port.deleted", "", name, func(all []tenant.Domain, ports inventory.Ports) error {
		p, ok := ports[name]
		if !ok {
			return fmt.Errorf("port %q: %w", name, ErrNotFound)
		}
		if d, _, ok := boundBy(all, name); ok {
			return fmt.Errorf("port %q is bound by domain %d of tenant %q: %w", name, d.TID, p.Tenant, ErrConflict)
		}
		delete(ports, name)
		return nil
	}, func(tx *store.Tx) error { return tx.DeletePort(name) })
}

// commitPorts runs an inventory change like commit runs a policy change.
func (c *Controller) commitPorts(ctx context.Context, kind, tenantID, port string,
	check func(all []tenant.Domain, ports inventory.Ports) error, write func(tx *store.Tx) error) error {
	return c.transact(ctx, func(tx *store.Tx, st *state) (bool, error) {
		if err := check(st.all, st.ports); err != nil {
			return false, err
		}
		if err := write(tx); err != nil {
			return false, err
		}
		_, err := tx.AddEvent(store.Event{Tenant: tenantID, Kind: kind, Subject: "port/" + port})
		return err == nil, err
	})
}
