package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/tenant"
)

type migration func(t *Tx) error

func sqlStep(q string) migration {
	return func(t *Tx) error {
		_, err := t.exec(q)
		return err
	}
}

// avHostFields are the host fields that AV policies of earlier versions
// held; vmi's was "memory".
var avHostFields = []string{"mode", "disk", "qmp", "node", "device", "socket", "transport", "cache", "guest_port"}

// leaseBoundPorts moves a store of earlier versions to the host
// inventory: every port a domain already binds is leased to that
// domain's tenant (the binding was accepted before), and the host paths
// that tenants once wrote into their service policies are dropped, not
// carried over: a tenant chose them. An event says what was dropped; the
// admin sets those resources in the inventory.
func leaseBoundPorts(t *Tx) error {
	docs, err := storedDocs(t)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	lease := func(name, tenantID string, uplink bool) error {
		doc, _ := json.Marshal(inventory.Port{Name: name, Tenant: tenantID, Uplink: uplink})
		_, err := t.exec(`INSERT INTO ports(name, tenant_id, doc, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO NOTHING`,
			name, tenantID, string(doc), now)
		return err
	}
	for _, d := range docs {
		// A generic document: fields of earlier versions that the current
		// types no longer have are still there to drop.
		var doc map[string]any
		if err := json.Unmarshal(d.doc, &doc); err != nil {
			return fmt.Errorf("domain %d: corrupt document: %w", d.tid, err)
		}
		var dropped []string
		if ups, ok := doc["uplinks"].([]any); ok {
			for _, u := range ups {
				if s, ok := u.(string); ok {
					if err := lease(s, d.tenant, true); err != nil {
						return err
					}
				}
			}
		}
		subnets, _ := doc["subnets"].([]any)
		for _, s := range subnets {
			sm, _ := s.(map[string]any)
			vms, _ := sm["vms"].([]any)
			for _, v := range vms {
				vm, _ := v.(map[string]any)
				if port, ok := vm["port"].(string); ok {
					if err := lease(port, d.tenant, false); err != nil {
						return err
					}
				}
				name, _ := vm["name"].(string)
				if p, ok := vm["vmi"].(map[string]any); ok {
					if _, had := p["memory"]; had {
						delete(p, "memory")
						dropped = append(dropped, fmt.Sprintf("vm %s: vmi memory", name))
					}
				}
				if p, ok := vm["av"].(map[string]any); ok {
					for _, f := range avHostFields {
						if _, had := p[f]; had {
							delete(p, f)
							dropped = append(dropped, fmt.Sprintf("vm %s: av %s", name, f))
						}
					}
				}
			}
		}
		if len(dropped) == 0 {
			continue
		}
		detail, _ := json.Marshal(dropped)
		if err := rewriteDoc(t, d, doc, "policy.host_fields_dropped",
			"host resources are now host inventory (secaas inventory set): "+string(detail)); err != nil {
			return err
		}
	}
	return nil
}

// storedDoc is a domain document as a migration reads it.
type storedDoc struct {
	tid    int
	tenant string
	doc    []byte
}

// storedDocs reads every domain document, by TID.
func storedDocs(t *Tx) ([]storedDoc, error) {
	rows, err := t.query(`SELECT tid, tenant_id, doc FROM domains ORDER BY tid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedDoc
	for rows.Next() {
		var d storedDoc
		var doc string
		if err := rows.Scan(&d.tid, &d.tenant, &doc); err != nil {
			return nil, err
		}
		d.doc = []byte(doc)
		out = append(out, d)
	}
	return out, rows.Err()
}

// rewriteDoc stores a migrated document and records what changed.
func rewriteDoc(t *Tx, d storedDoc, doc any, kind, detail string) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if _, err := t.exec(`UPDATE domains SET doc = ?, version = version + 1, updated_at = ? WHERE tid = ?`, string(b), now, d.tid); err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO events(time, tenant_id, kind, subject, detail) VALUES (?, ?, ?, ?, ?)`,
		now, d.tenant, kind, fmt.Sprintf("domain/%d", d.tid), detail)
	return err
}

// Ports lists the host inventory, by port name.
func (t *Tx) Ports() ([]inventory.Port, error) {
	rows, err := t.query(`SELECT doc FROM ports ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	defer rows.Close()
	var out []inventory.Port
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list ports: %w", err)
		}
		var p inventory.Port
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			return nil, fmt.Errorf("list ports: corrupt document: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Port returns one inventory record.
func (t *Tx) Port(name string) (inventory.Port, error) {
	var doc string
	err := t.queryRow(`SELECT doc FROM ports WHERE name = ?`, name).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return inventory.Port{}, fmt.Errorf("port %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return inventory.Port{}, fmt.Errorf("get port: %w", err)
	}
	var p inventory.Port
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return p, fmt.Errorf("get port: corrupt document: %w", err)
	}
	return p, nil
}

// PutPort inserts or replaces an inventory record.
func (t *Tx) PutPort(p inventory.Port) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("put port: %w", err)
	}
	_, err = t.exec(`INSERT INTO ports(name, tenant_id, doc, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET tenant_id = excluded.tenant_id, doc = excluded.doc, updated_at = excluded.updated_at`,
		p.Name, p.Tenant, string(doc), t.now.Format(time.RFC3339Nano))
	if err != nil {
		if !t.exists(`SELECT 1 FROM tenants WHERE id = ?`, p.Tenant) {
			return fmt.Errorf("tenant %q: %w", p.Tenant, ErrNotFound)
		}
		return fmt.Errorf("put port: %w", err)
	}
	return nil
}

// DeletePort removes an inventory record.
func (t *Tx) DeletePort(name string) error {
	res, err := t.exec(`DELETE FROM ports WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete port: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("port %q: %w", name, ErrNotFound)
	}
	return nil
}

// unambiguousNames moves stored domains of earlier versions to the
// stricter model: VMs whose names read as addresses, MACs or wildcards
// are renamed (tenant.RenameAmbiguous: rule entries then mean what they
// spell), and subnet prefixes with host bits are stored masked (as they
// were enforced). An event per domain says what changed.
func unambiguousNames(t *Tx) error {
	docs, err := storedDocs(t)
	if err != nil {
		return err
	}
	for _, d := range docs {
		var dom tenant.Domain
		if err := json.Unmarshal(d.doc, &dom); err != nil {
			return fmt.Errorf("domain %d: corrupt document: %w", d.tid, err)
		}
		changes := append(tenant.RenameAmbiguous(&dom), tenant.MaskPrefixes(&dom)...)
		if len(changes) == 0 {
			continue
		}
		if err := rewriteDoc(t, d, dom, "policy.migrated", strings.Join(changes, "; ")); err != nil {
			return err
		}
	}
	return nil
}
