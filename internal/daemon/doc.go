// Package daemon is secaasd's one composition root: it wires the store,
// the host's agent (behind the node contract), the controller and the API,
// runs the event pipeline and the reconcile loop, and stops them in order.
// cmd/secaasd, the end-to-end tests and the benchmarks build the daemon
// through it, so they all run the same wiring.
package daemon
