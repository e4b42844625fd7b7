package node

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/tenant"
)

// Sentinel errors a node answers with, for errors.Is.
var (
	// ErrNotFound: the node has no such object (a file in a guest's file
	// system, for instance).
	ErrNotFound = errors.New("not found on the node")
	// ErrNoService: the VM has no running service of that kind here.
	ErrNoService = errors.New("no such service on the node")
)

// Node is what the controller needs of a host's agent: the desired
// domains, with the host inventory that says which host resources (RAM
// file, QMP socket, disk) belong to each VM port.
type Node interface {
	Apply(ctx context.Context, domains []tenant.Domain, ports inventory.Ports) error
}

// Planner is a node that can say what a desired state would change on
// its switch without changing it.
type Planner interface {
	Plan(ctx context.Context, domains []tenant.Domain, ports inventory.Ports) (removed, added []string, err error)
}

// AV is a node that runs HyperAV. Results are the node's JSON documents.
type AV interface {
	AVScan(ctx context.Context, tid int, vm, path string) (json.RawMessage, error)
	AVIsolate(ctx context.Context, tid int, vm, path string) (json.RawMessage, error)
	// AVStatus is live: ErrNoService when the VM has no running service.
	AVStatus(tid int, vm string) (doc json.RawMessage, at time.Time, err error)
}
