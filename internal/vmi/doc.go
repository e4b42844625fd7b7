// Package vmi is agentless memory monitoring: one inspection of a guest's
// memory (Session.Inspect) gives its processes with details and command
// lines, the modules loaded, what every process holds (open files,
// sockets, memory maps; hidden processes included), the kernel's integrity
// (diverted syscall dispatch, IDT, inline, ftrace and kprobe hooks, with
// owners), and what a rootkit hid — processes and modules found by the
// fingerprint scan but missing from the kernel's own lists, and sockets
// whose /proc/net line a hooked function prints. Watch repeats that on an
// interval for a running guest and reports each cycle and each newly
// hidden object or hook; given the VM's mirrored traffic (Responses), it
// also cross-views each socket listing with the ports seen answering
// around it (CrossView): a port that answers with no socket to own it.
//
// Precision comes first: a monitor that cries wolf is switched off. A task
// that appears in the scan but not in the list may simply have been born
// between the two, or be in the middle of fork or exit; so the list is
// walked again after the scan, twice (the second 20 ms later), and a
// candidate is reported hidden only if it is still absent, still alive and
// still detached both times. A list that could not be walked whole (torn by the running
// guest, or hostile) is retried, and if it stays partial the cycle reports
// no hidden objects at all, only the error: comparing against half a list
// would flag the other half. An integrity finding must be in two checks a
// moment apart, and a process that exits while its files are read is a
// race, not an error.
package vmi
