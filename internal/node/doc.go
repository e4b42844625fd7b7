// Package node is the contract between the control plane and a host's
// agent: what the controller may ask of a node (apply the desired state,
// plan it without applying, run on-demand HyperAV work) and the errors a
// node answers with. The controller imports this package and nothing
// node-side (a test in package archtest enforces it); the agent implements
// it, today in the same process (package daemon wires the two), later
// over a wire between hosts. Results of on-demand work cross it as JSON
// documents.
package node
