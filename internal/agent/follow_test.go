package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"secaas/internal/ext4"
	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

// TestCallErrors: the node contract's errors come from the agent's own.
func TestCallErrors(t *testing.T) {
	for _, tc := range []struct {
		in   error
		want error
	}{
		{fmt.Errorf("lookup /x: %w", ext4.ErrNotFound), node.ErrNotFound},
		{ErrNoAV, node.ErrNoService},
	} {
		if _, err := doc(nil, tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v", tc.in, err)
		}
		// and across a wire
		if _, err := doc(nil, tc.in); !errors.Is(node.ToRemote(err).Err(), tc.want) {
			t.Errorf("%v over a wire: %v", tc.in, node.ToRemote(err).Err())
		}
	}
	other := errors.New("disk on fire")
	if _, err := doc(nil, other); !errors.Is(err, other) || errors.Is(err, node.ErrNotFound) {
		t.Errorf("other: %v", err)
	}
	if b, err := doc(map[string]int{"a": 1}, nil); err != nil || string(b) != `{"a":1}` {
		t.Errorf("document: %s %v", b, err)
	}
}

// flakySink refuses every other batch of events and the first status.
type flakySink struct {
	mu       sync.Mutex
	events   []node.Event
	statuses []node.Status
	calls    int
	refusals int
}

func (f *flakySink) Events(_ context.Context, evs []node.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls%2 == 1 && f.refusals < 3 {
		f.refusals++
		return errors.New("database is locked")
	}
	f.events = append(f.events, evs...)
	return nil
}

func (f *flakySink) Status(_ context.Context, s node.Status) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.statuses) == 0 && f.refusals < 4 {
		f.refusals++
		return errors.New("down")
	}
	f.statuses = append(f.statuses, s)
	return nil
}

func (f *flakySink) Result(context.Context, node.Result) error { return nil }

// TestReporterRetriesRefusedBatches: batches the sink refuses stay
// queued and go in later, each event exactly once and in order, numbered
// upwards; of statuses only the newest is sent.
func TestReporterRetriesRefusedBatches(t *testing.T) {
	r := NewReporter("h1")
	for i := 0; i < 1200; i++ {
		r.Put(Event{Kind: "k", Detail: fmt.Sprint(i)})
	}
	r.Status(node.Status{Host: "h1", Generation: 1})
	r.Status(node.Status{Host: "h1", Generation: 2})
	sink := &flakySink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, sink, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sink.mu.Lock()
		n, ns := len(sink.events), len(sink.statuses)
		sink.mu.Unlock()
		if (n == 1200 && ns == 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if r.Pending() != 0 || len(sink.events) != 1200 || sink.refusals != 4 {
		t.Fatalf("pending %d, delivered %d, refusals %d", r.Pending(), len(sink.events), sink.refusals)
	}
	for i, e := range sink.events {
		if e.Detail != fmt.Sprint(i) || e.Host != "h1" || (i > 0 && e.Seq != sink.events[i-1].Seq+1) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	if len(sink.statuses) != 1 || sink.statuses[0].Generation != 2 {
		t.Fatalf("statuses: %+v", sink.statuses)
	}
	// A reporter started later numbers above this one.
	if r2 := NewReporter("h1"); r2.start+1 <= sink.events[len(sink.events)-1].Seq {
		t.Fatal("a restarted agent's events would reuse numbers")
	}
}

// TestDesiredPersistence: a saved desired state loads back; a corrupt or
// invalid file is an error, a missing one is none.
func TestDesiredPersistence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "desired.json")
	if d, err := LoadDesired(file); d != nil || err != nil {
		t.Fatalf("missing: %v %v", d, err)
	}
	want := node.Desired{Host: "h", Generation: 7, Ports: inventory.Ports{"p1": {Name: "p1", Tenant: "t"}},
		Domains: []tenant.Domain{{TID: 3, Name: "d", Tenant: "t", Revision: 2, Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
			{Name: "a", MAC: "02:00:00:00:03:01", IP: "10.3.0.1", Port: "p1"}}}}}}}
	if err := SaveDesired(file, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDesired(file)
	if err != nil || got.Generation != 7 || got.Domains[0].Revision != 2 || got.Ports["p1"].Tenant != "t" {
		t.Fatalf("loaded %+v %v", got, err)
	}
	for _, bad := range []string{`{`, `{"host": "h", "generation": 1, "domains": [{"tid": 1, "name": "x", "subnets": [{"name": "s", "vms": [{"name": "a", "mac": "zz", "ip": "1.2.3.4", "port": "p"}]}]}]}`} {
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDesired(file); err == nil {
			t.Errorf("%s: loaded", bad)
		}
	}
}
