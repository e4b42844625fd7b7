// Package node is the contract between the control plane and the hosts'
// agents. Down: each host's Desired state (the domains with a port on the
// host, whole, the host's inventory records, and the tunnel endpoints of
// the hosts of those domains' VMs that run elsewhere) at a Generation
// that only grows; Calls for on-demand work (a flow plan, HyperAV scans).
// Up: a Status per attempt (the generation seen, the one enforced, each
// domain's revision and state, the host's own tunnel endpoint), Events (numbered per host, so one
// delivered twice is kept once) and per-VM Results. The controller sees a
// Fleet and gives a Sink; an agent sees a Link. Package bus carries it in
// process and over NATS JetStream. The controller imports this package
// and nothing node-side (package archtest enforces it).
package node
