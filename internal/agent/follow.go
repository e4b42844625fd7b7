package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"secaas/internal/ext4"
	"secaas/internal/hostpath"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

// ApplyDesired applies a host's desired state (package node) and says
// how it went: on success every domain is applied at its revision; on
// failure the switch keeps what it enforced, the domains that are still
// enforced at their desired revision stay applied, and the others are
// failed with the reason. Per-VM services run only for the VMs whose
// ports the desired state places on this host.
func (a *Agent) ApplyDesired(ctx context.Context, d node.Desired) node.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := node.Status{Host: d.Host, Generation: d.Generation, Endpoint: a.endpoint(), Time: time.Now().UTC()}
	prev := map[int]int{}
	for _, dom := range a.domains {
		prev[dom.TID] = dom.Revision
	}
	oldInv, oldHere, oldRemote := a.inv, a.here, a.remote
	a.inv, a.remote = d.Ports, d.Remote
	a.here = map[string]bool{}
	for p := range d.Ports {
		a.here[p] = true
	}
	err := a.applyLocked(ctx, d.Domains)
	if err != nil {
		a.inv, a.here, a.remote = oldInv, oldHere, oldRemote
		st.Applied, st.Error = a.generation, err.Error()
	} else {
		a.generation = d.Generation
		st.Applied = d.Generation
	}
	for _, dom := range d.Domains {
		o := node.ObjectStatus{Kind: "domain", ID: strconv.Itoa(dom.TID), Revision: dom.Revision, State: node.Applied}
		if rev, ok := prev[dom.TID]; err != nil && (!ok || rev != dom.Revision) {
			o.State, o.Message = node.Failed, err.Error()
		}
		st.Objects = append(st.Objects, o)
	}
	return st
}

// Handle does the host's on-demand work (node.Call): plans and HyperAV
// scans, isolation and status.
func (a *Agent) Handle(ctx context.Context, c node.Call) (json.RawMessage, error) {
	switch c.Op {
	case node.OpPlan:
		if c.Desired == nil {
			return nil, errors.New("plan: no desired state")
		}
		removed, added, err := a.Plan(ctx, c.Desired.Domains, c.Desired.Ports)
		if err != nil {
			return nil, err
		}
		return json.Marshal(node.Plan{Removed: nonNil(removed), Added: nonNil(added)})
	case node.OpAVScan:
		return doc(a.AVScan(ctx, c.TID, c.VM, c.Path))
	case node.OpAVIsolate:
		return doc(a.AVIsolate(ctx, c.TID, c.VM, c.Path))
	case node.OpAVStatus:
		return doc(a.AVStatus(c.TID, c.VM))
	}
	return nil, fmt.Errorf("unknown call %q", c.Op)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// doc turns a result into the contract's JSON document and an error into
// the contract's.
func doc(v any, err error) (json.RawMessage, error) {
	switch {
	case err == nil:
		return json.Marshal(v)
	case errors.Is(err, ext4.ErrNotFound):
		return nil, fmt.Errorf("%w: %v", node.ErrNotFound, err)
	case errors.Is(err, ErrNoAV):
		return nil, fmt.Errorf("%w: %v", node.ErrNoService, err)
	}
	return nil, err
}

// Follow is an autonomous agent's main loop for host: it applies the
// desired state it last persisted in file (so that a restarted agent
// enforces its last state before it reaches the controller), then each
// desired state link delivers (newest wins; older generations are
// ignored), persisting each before applying it; it tries a failed one
// again every retry, answers the host's calls, and reports every status.
// Reports the link refuses are kept and sent again, the newest status
// only. It returns when ctx ends.
func (a *Agent) Follow(ctx context.Context, link node.Link, host, file string, rep *Reporter, retry time.Duration) error {
	var cur *node.Desired
	var failed bool
	apply := func(d node.Desired) {
		st := a.ApplyDesired(ctx, d)
		failed = st.Applied != d.Generation
		if failed {
			a.log.Error("desired state not applied: will try again", "host", host, "generation", d.Generation, "err", st.Error)
		}
		rep.Status(st)
	}
	if d, err := LoadDesired(file); err != nil {
		a.log.Error("persisted desired state unreadable: waiting for the controller", "file", file, "err", err)
	} else if d != nil && d.Host == host {
		cur = d
		apply(*d)
	}
	go func() {
		if err := link.Serve(ctx, host, a.Handle); err != nil && ctx.Err() == nil {
			a.log.Error("serving calls", "host", host, "err", err)
		}
	}()
	ch, err := link.Desired(ctx, host)
	if err != nil {
		return err
	}
	t := time.NewTicker(retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if d.Host != host || (cur != nil && d.Generation < cur.Generation) {
				continue
			}
			if cur != nil && d.Generation == cur.Generation && !failed {
				rep.Status(a.status(host)) // a redelivery: say again where we are
				continue
			}
			cur = &d
			if err := SaveDesired(file, d); err != nil {
				a.log.Error("persist desired state", "file", file, "err", err)
			}
			apply(d)
		case <-t.C:
			if failed && cur != nil {
				apply(*cur)
			}
		}
	}
}

// endpoint is the tunnel endpoint the agent reports ("" without one).
func (a *Agent) endpoint() string {
	if !a.TunnelIP.IsValid() {
		return ""
	}
	return a.TunnelIP.String()
}

// status is the agent's current status, for a redelivered desired state.
func (a *Agent) status(host string) node.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := node.Status{Host: host, Generation: a.generation, Applied: a.generation, Endpoint: a.endpoint(), Time: time.Now().UTC()}
	for _, dom := range a.domains {
		st.Objects = append(st.Objects, node.ObjectStatus{Kind: "domain", ID: strconv.Itoa(dom.TID), Revision: dom.Revision, State: node.Applied})
	}
	return st
}

// LoadDesired reads a persisted desired state; nil when there is none.
func LoadDesired(file string) (*node.Desired, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d node.Desired
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := tenant.NewNet(d.Domains); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &d, nil
}

// SaveDesired persists d in file, atomically, readable by root only.
func SaveDesired(file string, d node.Desired) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return hostpath.WriteFileAtomic(file, b)
}

// Reporter carries what the agent reports to the control plane: events
// in order and each once (numbered from the agent's start time in
// nanoseconds, so numbers grow across restarts), the newest result of
// each VM and kind, and the newest status. It never blocks the agent and
// never drops an event: a batch the link refuses is sent again.
type Reporter struct {
	host  string
	start uint64
	q     queue[node.Event]
	res   latest[node.Result]
	st    latest[node.Status]
}

// NewReporter returns a reporter for host.
func NewReporter(host string) *Reporter {
	return &Reporter{host: host, start: uint64(time.Now().UnixNano()),
		q: newQueue[node.Event](), res: newLatest[node.Result](), st: newLatest[node.Status]()}
}

// Put takes an event of the agent's (the agent's onEvent).
func (r *Reporter) Put(e Event) {
	now := time.Now().UTC()
	if e.Data != nil {
		r.res.put(fmt.Sprintf("%s/%d/%s", e.Kind, e.TID, e.VM), node.Result{Host: r.host, TID: e.TID, VM: e.VM,
			Kind: trimReport(e.Kind), Tenant: e.Tenant, Time: now, Doc: e.Data})
		return
	}
	r.q.put(func(n uint64) node.Event {
		return node.Event{Host: r.host, Seq: r.start + n, Time: now, Tenant: e.Tenant, Kind: e.Kind, Subject: e.Subject, Detail: e.Detail}
	})
}

func trimReport(kind string) string { return strings.TrimSuffix(kind, ".report") }

// Status takes a status to report (only the newest is kept).
func (r *Reporter) Status(s node.Status) { r.st.put("", s) }

// Pending is the number of events not yet accepted by the link.
func (r *Reporter) Pending() int { return r.q.len() }

// Run sends what is reported to sink until ctx ends: events in batches
// of up to maxBatch, then results, then the status; what sink refuses is
// tried again after a pause that grows to 5 s.
func (r *Reporter) Run(ctx context.Context, sink node.Sink, log logger) {
	pause := 100 * time.Millisecond
	for {
		err := r.flush(ctx, sink)
		if err == nil {
			pause = 100 * time.Millisecond
			select {
			case <-ctx.Done():
				return
			case <-r.q.ready:
			case <-r.res.ready:
			case <-r.st.ready:
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		log.Error("report to the control plane: will try again", "events", r.q.len(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// maxBatch bounds the events sent at once.
const maxBatch = 500

// flush sends everything reported so far.
func (r *Reporter) flush(ctx context.Context, sink node.Sink) error {
	for {
		batch := r.q.peek(maxBatch)
		if len(batch) == 0 {
			break
		}
		if err := sink.Events(ctx, batch); err != nil {
			return err
		}
		r.q.drop(len(batch))
	}
	for k, res := range r.res.take() {
		if err := sink.Result(ctx, res); err != nil {
			r.res.putBack(k, res)
			return err
		}
	}
	for k, s := range r.st.take() {
		if err := sink.Status(ctx, s); err != nil {
			r.st.putBack(k, s)
			return err
		}
	}
	return nil
}

// logger is the part of *slog.Logger the reporter uses.
type logger interface {
	Error(msg string, args ...any)
}

// Domains returns the domains the agent enforces, by TID.
func (a *Agent) Domains() []tenant.Domain {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.domains)
	slices.SortFunc(out, func(x, y tenant.Domain) int { return x.TID - y.TID })
	return out
}
