// Package bus carries the node contract (package node) between the
// control plane and the hosts' agents: desired states down (the newest
// per host, also to an agent that connects later), statuses, events and
// results up (events durable and in order, none lost), and calls for
// on-demand work. Local does it inside one process for a one-host
// deployment; NATS does it over NATS JetStream for many hosts, with a
// NATS server the controller embeds by default or an external cluster.
package bus
