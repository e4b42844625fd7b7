// Package cli implements the secaas command: offline policy tools (compile,
// check, trace, apply), the namespace lab, benchmarks, and a client for the
// secaasd REST API. Command names and output formats are stable so that
// scripts can rely on them.
package cli
