// Package store keeps the control plane's state in embedded SQLite (pure-Go
// driver modernc.org/sqlite): tenants with hashed API tokens, tenant domains
// as validated JSON documents keyed by TID, the host inventory (switch
// ports leased to tenants, with their VMs' host resources), per-VM results
// and the event history. The database and its -wal and -shm files are
// 0600. Schema changes are numbered migrations applied at Open, in SQL or
// in Go where stored documents change (leaseBoundPorts, unambiguousNames). All writes go through
// Update, one transaction that the caller may abort (for example when the
// switch refuses the new policy), so a failed change leaves nothing behind.
package store
