package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// NextGeneration advances the desired-state generation and returns it.
func (t *Tx) NextGeneration() (int64, error) {
	var g int64
	err := t.queryRow(`UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value`).Scan(&g)
	if err != nil {
		return 0, fmt.Errorf("next generation: %w", err)
	}
	return g, nil
}

// Generation is the current desired-state generation.
func (t *Tx) Generation() (int64, error) {
	var g int64
	if err := t.queryRow(`SELECT value FROM meta WHERE key = 'generation'`).Scan(&g); err != nil {
		return 0, fmt.Errorf("generation: %w", err)
	}
	return g, nil
}

// Host is a hypervisor host as the control plane knows it: the
// generation of the desired state last published to it, and the status
// it last reported (a node.Status document; empty until the first) and
// when.
type Host struct {
	Name      string          `json:"name"`
	Published int64           `json:"published"`
	Status    json.RawMessage `json:"status,omitempty"`
	SeenAt    time.Time       `json:"seen_at,omitzero"`
}

// PublishedTo records that the desired state at generation g went to
// host (never lowering the recorded generation).
func (t *Tx) PublishedTo(host string, g int64) error {
	_, err := t.exec(`INSERT INTO hosts(name, published) VALUES (?, ?)
		ON CONFLICT(name) DO UPDATE SET published = CASE WHEN excluded.published > hosts.published THEN excluded.published ELSE hosts.published END`, host, g)
	if err != nil {
		return fmt.Errorf("record publication: %w", err)
	}
	return nil
}

// PutHostStatus records the status host reported.
func (t *Tx) PutHostStatus(host string, status json.RawMessage) error {
	if !json.Valid(status) {
		return errors.New("put host status: document is not JSON")
	}
	_, err := t.exec(`INSERT INTO hosts(name, status, seen_at) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET status = excluded.status, seen_at = excluded.seen_at`,
		host, string(status), t.now.Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("put host status: %w", err)
	}
	return nil
}

// Hosts lists every known host by name.
func (t *Tx) Hosts() ([]Host, error) {
	rows, err := t.query(`SELECT name, published, status, seen_at FROM hosts ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// DeleteHost forgets a host.
func (t *Tx) DeleteHost(name string) error {
	res, err := t.exec(`DELETE FROM hosts WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete host: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("host %q: %w", name, ErrNotFound)
	}
	return nil
}

func scanHost(rows *sql.Rows) (Host, error) {
	var h Host
	var status, seen string
	if err := rows.Scan(&h.Name, &h.Published, &status, &seen); err != nil {
		return h, fmt.Errorf("list hosts: %w", err)
	}
	if status != "" {
		h.Status = json.RawMessage(status)
	}
	h.SeenAt, _ = time.Parse(time.RFC3339Nano, seen)
	return h, nil
}
