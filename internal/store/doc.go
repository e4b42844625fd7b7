// Package store keeps the control plane's state in embedded SQLite (pure-Go
// driver modernc.org/sqlite): tenants with hashed API tokens, tenant domains
// as validated JSON documents keyed by TID (with a revision each), the host
// inventory (switch ports leased to tenants, with their hosts and their
// VMs' host resources), the desired-state generation, the hosts (the
// generation last published to each and the status each reported), per-VM
// results and the event history (host events kept once by their origin,
// host and number). The database and its -wal and -shm files are 0600.
// Schema changes are numbered migrations applied at Open, in SQL or in Go
// where stored documents change (leaseBoundPorts, unambiguousNames). All
// writes go through Update, one transaction that the caller may abort, so
// a failed change leaves nothing behind.
package store
