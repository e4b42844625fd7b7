package agent

import "context"

// worker is a per-VM background job the desired state asks for (memory
// monitoring, HyperAV): started when a policy appears, restarted when it
// changes, stopped when it goes.
type worker struct {
	key    string // the policy it runs, as JSON: a change restarts it
	cancel context.CancelFunc
	done   chan struct{}
}

// startWorker runs job in its own goroutine until stopped.
func startWorker(key string, job func(ctx context.Context)) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{key: key, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		job(ctx)
	}()
	return w
}

func (w *worker) stop() {
	w.cancel()
	<-w.done
}

// stopStale stops and forgets the running workers that wants (id -> policy
// key) no longer asks for, or asks for with another policy.
func stopStale[W interface{ base() *worker }](running map[string]W, wants map[string]string) {
	for id, w := range running {
		if key, ok := wants[id]; !ok || key != w.base().key {
			w.base().stop()
			delete(running, id)
		}
	}
}

// stopAll stops and forgets every worker.
func stopAll[W interface{ base() *worker }](running map[string]W) {
	for id, w := range running {
		w.base().stop()
		delete(running, id)
	}
}
