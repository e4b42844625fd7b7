// Package kmon is syscall monitoring by injection into a running Linux
// guest through QEMU's gdbstub (package gdbstub). Built so far: the
// paper's bottom-up function call channel (Call: a vCPU caught in process
// context on the syscall path is made to call a guest kernel function
// with arguments and return into a breakpoint, and is then put back
// exactly as it was) and Inject, which allocates module memory in the
// guest (module_alloc), makes it executable (set_memory_x), and writes an
// object relocated against the guest's own kallsyms (package elfreloc),
// leaving nothing in the guest's module list; and the dispatch hook:
// FindDispatch finds the one `call x64_sys_call` in do_syscall_64 (the
// dispatch of Debian's 6.1 kernels), HookDispatch rewrites its rel32 to
// the monitor (object/monitor.c: per-number counts, numbers failed with
// EPERM, policies P = (syscalls, (subject comm, object path), record |
// block) and an event ring, in a shared area the host reads and writes:
// EncodePolicies, DecodeEvents), Unhook puts it back. Not built yet:
// protection, table-dispatch kernels, freeing the monitor once no task is
// inside, the daemon's service.
package kmon
