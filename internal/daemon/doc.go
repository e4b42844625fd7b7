// Package daemon is secaasd's one composition root: it wires a role
// (RoleAll: one host, in-process bus; RoleController: store, controller,
// API and an embedded NATS JetStream server or an external one;
// RoleAgent: this host's agent on the bus), runs the report pipeline, the
// republication of missed desired states, event retention and the
// reconcile loop, and stops them in order. cmd/secaasd, the end-to-end and
// multi-host tests and the benchmarks build the daemon through it, so
// they all run the same wiring.
package daemon
