// Package gdbstub is a client of the GDB remote serial protocol as QEMU's
// gdbstub (-gdb unix:PATH) speaks it: all-stop, with acknowledgements,
// checksums, escapes and run lengths. It reads the target description
// (so registers have names), reads and writes registers ('g'/'G') and
// guest virtual memory ('m'/'M'), selects vCPU threads, sets software and
// hardware breakpoints and write watchpoints ('Z'/'z'), continues until a
// stop or a deadline (then interrupts), and detaches so the guest runs on
// when secaas is done or dies (the connection's end also detaches: QEMU
// resumes the guest). Every exchange has a timeout. Syscall monitoring by
// injection reaches the guest kernel through it.
package gdbstub
