package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"secaas/internal/node"
)

// Local is the node contract inside one process: a Fleet for the
// controller and a Link for the agents, delivering reports to a Sink.
type Local struct {
	mu       sync.Mutex // guards the maps
	desired  map[string]node.Desired
	subs     map[string][]chan node.Desired
	handlers map[string]node.Handler
	sink     node.Sink
}

var (
	_ node.Fleet = (*Local)(nil)
	_ node.Link  = (*Local)(nil)
)

// NewLocal returns an in-process bus; reports go to the sink set with
// SetSink (refused until then).
func NewLocal() *Local {
	return &Local{desired: map[string]node.Desired{}, subs: map[string][]chan node.Desired{}, handlers: map[string]node.Handler{}}
}

// SetSink sets where the agents' reports go.
func (l *Local) SetSink(s node.Sink) {
	l.mu.Lock()
	l.sink = s
	l.mu.Unlock()
}

// Publish keeps d as its host's newest desired state and hands it to the
// host's agents (an agent that has not taken the previous one yet gets
// only this one).
func (l *Local) Publish(_ context.Context, d node.Desired) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.desired[d.Host] = d
	for _, ch := range l.subs[d.Host] {
		offer(ch, d)
	}
	return nil
}

// offer puts d in a one-slot mailbox, replacing what it holds.
func offer(ch chan node.Desired, d node.Desired) {
	select {
	case <-ch:
	default:
	}
	ch <- d
}

// Desired delivers host's desired states until ctx ends, the current one
// first.
func (l *Local) Desired(ctx context.Context, host string) (<-chan node.Desired, error) {
	ch := make(chan node.Desired, 1)
	l.mu.Lock()
	if d, ok := l.desired[host]; ok {
		ch <- d
	}
	l.subs[host] = append(l.subs[host], ch)
	l.mu.Unlock()
	go func() {
		<-ctx.Done()
		l.mu.Lock()
		defer l.mu.Unlock()
		subs := l.subs[host]
		for i, c := range subs {
			if c == ch {
				l.subs[host] = append(subs[:i:i], subs[i+1:]...)
				break
			}
		}
	}()
	return ch, nil
}

// Serve answers host's calls with h until ctx ends.
func (l *Local) Serve(ctx context.Context, host string, h node.Handler) error {
	l.mu.Lock()
	if _, taken := l.handlers[host]; taken {
		l.mu.Unlock()
		return fmt.Errorf("host %q is already served", host)
	}
	l.handlers[host] = h
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	delete(l.handlers, host)
	l.mu.Unlock()
	return nil
}

// Call asks host's agent for on-demand work.
func (l *Local) Call(ctx context.Context, host string, c node.Call) (json.RawMessage, error) {
	l.mu.Lock()
	h, ok := l.handlers[host]
	l.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("host %q: %w", host, node.ErrUnreachable)
	}
	return h(ctx, c)
}

func (l *Local) sinkOrErr() (node.Sink, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sink == nil {
		return nil, fmt.Errorf("no control plane yet: %w", node.ErrUnreachable)
	}
	return l.sink, nil
}

// Status passes a host's status to the sink.
func (l *Local) Status(ctx context.Context, s node.Status) error {
	k, err := l.sinkOrErr()
	if err != nil {
		return err
	}
	return k.Status(ctx, s)
}

// Events passes a host's events to the sink.
func (l *Local) Events(ctx context.Context, evs []node.Event) error {
	k, err := l.sinkOrErr()
	if err != nil {
		return err
	}
	return k.Events(ctx, evs)
}

// Result passes a host's result to the sink.
func (l *Local) Result(ctx context.Context, r node.Result) error {
	k, err := l.sinkOrErr()
	if err != nil {
		return err
	}
	return k.Result(ctx, r)
}
