package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

const token = "bus-test-token-0123456789"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder is a sink that keeps what it is given and can refuse.
type recorder struct {
	mu       sync.Mutex
	events   []node.Event
	results  []node.Result
	statuses map[string]node.Status
	refuse   int // refuse this many more event batches
}

func newRecorder() *recorder { return &recorder{statuses: map[string]node.Status{}} }

func (r *recorder) Status(_ context.Context, s node.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statuses[s.Host] = s
	return nil
}

func (r *recorder) Events(_ context.Context, evs []node.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse > 0 {
		r.refuse--
		return errors.New("database is locked")
	}
	r.events = append(r.events, evs...)
	return nil
}

func (r *recorder) Result(_ context.Context, res node.Result) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
	return nil
}

func (r *recorder) wait(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		done := ok()
		r.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func desired(host string, g int64) node.Desired {
	return node.Desired{Host: host, Generation: g, Ports: inventory.Ports{"p1": {Name: "p1", Tenant: "t", Host: host}},
		Domains: []tenant.Domain{{TID: 1, Name: "d", Tenant: "t", Revision: int(g)}}}
}

// TestNATSContract runs the node contract over a real embedded NATS
// server: desired states (the newest, also to an agent that subscribes
// later; host names with dots), calls with the contract's errors,
// statuses, results, and events that survive a refusing store and a
// restart of the server, each once and in order.
func TestNATSContract(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	srv, err := StartServer("127.0.0.1:0", dir, token)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	ctl, err := Dial(ctx, url, token, "controller", quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
	defer icancel()
	if _, err := Dial(ictx, url, "wrong-token-0123456789", "intruder", quiet); err == nil || ictx.Err() != nil {
		t.Fatal("a wrong token was admitted")
	}
	const host = "hv1.example"
	agt, err := Dial(ctx, url, token, host, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer agt.Close()

	// Desired: published before the agent watches; then newer ones.
	if err := ctl.Publish(ctx, desired(host, 1)); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Publish(ctx, desired("other", 9)); err != nil {
		t.Fatal(err)
	}
	ch, err := agt.Desired(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	next := func() node.Desired {
		t.Helper()
		select {
		case d := <-ch:
			return d
		case <-time.After(10 * time.Second):
			t.Fatal("no desired state")
		}
		return node.Desired{}
	}
	if d := next(); d.Generation != 1 || d.Host != host || d.Ports["p1"].Host != host || d.Domains[0].Revision != 1 {
		t.Fatalf("first: %+v", d)
	}
	ctl.Publish(ctx, desired(host, 2))
	if d := next(); d.Generation != 2 {
		t.Fatalf("second: %+v", d)
	}

	// Calls.
	sctx, stopServe := context.WithCancel(ctx)
	go agt.Serve(sctx, host, func(_ context.Context, c node.Call) (json.RawMessage, error) {
		switch c.Path {
		case "/missing":
			return nil, fmt.Errorf("lookup: %w", node.ErrNotFound)
		case "/noservice":
			return nil, node.ErrNoService
		}
		return json.Marshal(map[string]string{"op": c.Op, "path": c.Path})
	})
	var doc json.RawMessage
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		doc, err = ctl.Call(ctx, host, node.Call{Op: node.OpAVScan, Path: "/etc/x"})
		if !errors.Is(err, node.ErrUnreachable) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || string(doc) != `{"op":"av.scan","path":"/etc/x"}` {
		t.Fatalf("call: %s %v", doc, err)
	}
	if _, err := ctl.Call(ctx, host, node.Call{Path: "/missing"}); !errors.Is(err, node.ErrNotFound) {
		t.Fatalf("not found across the wire: %v", err)
	}
	if _, err := ctl.Call(ctx, host, node.Call{Path: "/noservice"}); !errors.Is(err, node.ErrNoService) {
		t.Fatalf("no service across the wire: %v", err)
	}
	if _, err := ctl.Call(ctx, "nobody", node.Call{}); !errors.Is(err, node.ErrUnreachable) {
		t.Fatalf("a host nobody serves: %v", err)
	}
	stopServe()

	// Reports: the store refuses the first batches; then the server
	// restarts on the same directory with events still unconsumed.
	rec := newRecorder()
	rec.refuse = 2
	rctx, stopReceive := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctl.Receive(rctx, rec) }()
	seq := uint64(1000)
	batch := func(n int) {
		t.Helper()
		var evs []node.Event
		for i := 0; i < n; i++ {
			seq++
			evs = append(evs, node.Event{Host: host, Seq: seq, Kind: "k", Detail: fmt.Sprint(seq)})
		}
		if err := agt.Events(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		batch(50)
	}
	if err := agt.Status(ctx, node.Status{Host: host, Generation: 2, Applied: 2}); err != nil {
		t.Fatal(err)
	}
	if err := agt.Result(ctx, node.Result{Host: host, TID: 1, VM: "a", Kind: "vmi", Doc: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "500 events, a status and a result", func() bool {
		return len(rec.events) == 500 && rec.statuses[host].Applied == 2 && len(rec.results) == 1
	})
	stopReceive()
	<-done
	for i := 0; i < 4; i++ {
		batch(25) // nobody consumes these now
	}
	srv.Close()
	srv, err = StartServer(url[len("nats://"):], dir, token)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { done <- ctl.Receive(ctx, rec) }()
	rec.wait(t, "the events kept across the restart", func() bool { return len(rec.events) == 600 })
	time.Sleep(200 * time.Millisecond) // nothing more may come
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 600 {
		t.Fatalf("%d events", len(rec.events))
	}
	for i, e := range rec.events {
		if e.Seq != uint64(1001+i) {
			t.Fatalf("event %d has seq %d: lost, doubled or out of order", i, e.Seq)
		}
	}
}
