// Package store keeps the control plane's state in embedded SQLite (pure-Go
// driver modernc.org/sqlite): tenants with hashed API tokens, tenant domains
// as validated JSON documents keyed by TID, and the event history. Schema
// changes are numbered migrations applied at Open. All writes go through
// Update, one transaction that the caller may abort (for example when the
// switch refuses the new policy), so a failed change leaves nothing behind.
package store
