package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/tenant"
)

// Sentinel errors a node answers with, for errors.Is. They keep their
// identity across a wire (see Remote).
var (
	// ErrNotFound: the node has no such object (a file in a guest's file
	// system, for instance).
	ErrNotFound = errors.New("not found on the node")
	// ErrNoService: the VM has no running service of that kind here.
	ErrNoService = errors.New("no such service on the node")
	// ErrUnreachable: no agent of that host answered.
	ErrUnreachable = errors.New("host unreachable")
)

// Desired is one host's desired state at a generation: the domains with a
// port on the host (whole, so that a domain spanning hosts compiles the
// same everywhere) and the host's inventory, which says which host
// resources (RAM file, QMP socket, disk) belong to each VM port.
// Generations only grow; an agent ignores one older than what it has.
type Desired struct {
	Host       string          `json:"host"`
	Generation int64           `json:"generation"`
	Domains    []tenant.Domain `json:"domains"`
	Ports      inventory.Ports `json:"ports"`
	// Remote: the tunnel endpoint of the host of each VM port of these
	// domains that runs on another host (which reported an endpoint).
	Remote map[string]netip.Addr `json:"remote,omitempty"`
}

// Object states in a Status.
const (
	Applied = "applied"
	Failed  = "failed"
	Pending = "pending" // only in the control plane's views: not yet reported
)

// ObjectStatus is one object's state on a host: a domain at a revision,
// or a per-VM service.
type ObjectStatus struct {
	Kind     string `json:"kind"` // "domain", "service"
	ID       string `json:"id"`   // "7" for a domain; "7/VM1/av" for a service
	Revision int    `json:"revision,omitempty"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
}

// Status is what a host reports after each attempt to apply a desired
// state: Generation is the newest generation it has seen and tried,
// Applied the one its switch enforces (equal unless the attempt failed,
// and then Error says why), Objects each object's state.
type Status struct {
	Host       string `json:"host"`
	Generation int64  `json:"generation"`
	Applied    int64  `json:"applied"`
	Error      string `json:"error,omitempty"`
	// Endpoint: the host's tunnel endpoint (VXLAN), where the other
	// hosts send its domains' packets; empty when it has none.
	Endpoint string         `json:"endpoint,omitempty"`
	Time     time.Time      `json:"time"`
	Objects  []ObjectStatus `json:"objects,omitempty"`
}

// Event is something a host did or saw that the control plane records.
// Host and Seq identify it: an event delivered twice is stored once.
type Event struct {
	Host    string    `json:"host"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Tenant  string    `json:"tenant,omitempty"`
	Kind    string    `json:"kind"`
	Subject string    `json:"subject,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Result is the latest result of a per-VM service (a memory-monitoring
// report, a HyperAV round); only the newest of each (TID, VM, Kind)
// matters.
type Result struct {
	Host   string          `json:"host"`
	TID    int             `json:"tid"`
	VM     string          `json:"vm"`
	Kind   string          `json:"kind"`
	Tenant string          `json:"tenant"`
	Time   time.Time       `json:"time"`
	Doc    json.RawMessage `json:"doc"`
}

// Call operations.
const (
	OpPlan      = "plan"       // Desired: which flows would change
	OpAVScan    = "av.scan"    // TID, VM, Path
	OpAVIsolate = "av.isolate" // TID, VM, Path
	OpAVStatus  = "av.status"  // TID, VM: live, ErrNoService when not running
)

// Call is on-demand work asked of one host, answered with a JSON document.
type Call struct {
	Op      string   `json:"op"`
	TID     int      `json:"tid,omitempty"`
	VM      string   `json:"vm,omitempty"`
	Path    string   `json:"path,omitempty"`
	Desired *Desired `json:"desired,omitempty"`
}

// Plan is the answer to OpPlan.
type Plan struct {
	Removed []string `json:"removed"`
	Added   []string `json:"added"`
}

// Fleet is the control plane's side of the transport to the hosts.
type Fleet interface {
	// Publish hands a host its desired state; the newest one published
	// for a host is delivered to its agent, also one that connects later.
	Publish(ctx context.Context, d Desired) error
	// Call asks a host for on-demand work.
	Call(ctx context.Context, host string, c Call) (json.RawMessage, error)
}

// Sink receives what the hosts report. An error refuses the report; the
// transport delivers it again.
type Sink interface {
	Status(ctx context.Context, s Status) error
	Events(ctx context.Context, evs []Event) error
	Result(ctx context.Context, r Result) error
}

// Handler does a host's on-demand work.
type Handler func(ctx context.Context, c Call) (json.RawMessage, error)

// Link is an agent's side of the transport.
type Link interface {
	// Desired delivers the host's desired states, newest last, until ctx
	// ends; the one current when it is called comes first.
	Desired(ctx context.Context, host string) (<-chan Desired, error)
	// Serve answers the host's calls with h until ctx ends.
	Serve(ctx context.Context, host string, h Handler) error
	Sink
}

// Remote is an error as it crosses a wire: a code that keeps the
// sentinels' identity, and the message.
type Remote struct {
	Code    string `json:"code"` // "not_found", "no_service", "failed"
	Message string `json:"message"`
}

// ToRemote encodes err for a wire.
func ToRemote(err error) Remote {
	code := "failed"
	switch {
	case errors.Is(err, ErrNotFound):
		code = "not_found"
	case errors.Is(err, ErrNoService):
		code = "no_service"
	}
	return Remote{Code: code, Message: err.Error()}
}

// Err decodes a wire error.
func (r Remote) Err() error {
	switch r.Code {
	case "not_found":
		return fmt.Errorf("%w: %s", ErrNotFound, r.Message)
	case "no_service":
		return fmt.Errorf("%w: %s", ErrNoService, r.Message)
	}
	return errors.New(r.Message)
}
