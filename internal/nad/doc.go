// Package nad wires network anomaly detection together: a packet source
// (package capture) -> decode -> one feature extractor per monitored server
// (package feature) -> a detector per server (package detect). It is used by
// the CLI on capture files and, later, by the node agent on a live mirror
// port.
package nad
