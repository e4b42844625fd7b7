package agent

import (
	"slices"
	"sync"
)

// queue is a FIFO that never blocks the producer; items are numbered
// from 1 in the order they are put.
type queue[T any] struct {
	mu    sync.Mutex // guards items and n
	items []T
	n     uint64
	ready chan struct{} // one pending signal: there are items
}

func newQueue[T any]() queue[T] { return queue[T]{ready: make(chan struct{}, 1)} }

// put appends the item make builds from its number.
func (q *queue[T]) put(make func(n uint64) T) {
	q.mu.Lock()
	q.n++
	q.items = append(q.items, make(q.n))
	q.mu.Unlock()
	signal(q.ready)
}

// peek returns up to n of the oldest items, leaving them queued.
func (q *queue[T]) peek(n int) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.items[:min(n, len(q.items))])
}

// drop removes the n oldest items (delivered).
func (q *queue[T]) drop(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = q.items[n:]
	if len(q.items) == 0 {
		q.items = nil // let the backing array go
	}
}

func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// latest keeps the newest item of each key until it is taken.
type latest[T any] struct {
	mu    sync.Mutex // guards m
	m     map[string]T
	ready chan struct{}
}

func newLatest[T any]() latest[T] { return latest[T]{m: map[string]T{}, ready: make(chan struct{}, 1)} }

func (l *latest[T]) put(k string, v T) {
	l.mu.Lock()
	l.m[k] = v
	l.mu.Unlock()
	signal(l.ready)
}

// putBack returns an item that could not be delivered, unless a newer
// one of its key came meanwhile.
func (l *latest[T]) putBack(k string, v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, newer := l.m[k]; !newer {
		l.m[k] = v
	}
}

func (l *latest[T]) take() map[string]T {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.m
	l.m = map[string]T{}
	return out
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
