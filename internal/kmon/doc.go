// Package kmon is syscall monitoring by injection into a running Linux
// guest through QEMU's gdbstub (package gdbstub) and the guest's RAM.
//
// The parts, bottom up: the paper's bottom-up function call channel
// (Target.Call: a vCPU caught in process context on the syscall path is
// made to call a guest kernel function with arguments and return into a
// breakpoint, and is then put back exactly as it was); Inject, which
// allocates module memory in the guest (module_alloc), makes it
// executable (set_memory_x), and writes an object relocated against the
// guest's own kallsyms (package elfreloc), leaving nothing in the guest's
// module list; the dispatch hook: FindDispatch finds the one
// `call x64_sys_call` in do_syscall_64 (the dispatch of Debian's 6.1
// kernels), HookDispatch rewrites its rel32 to the monitor, Unhook puts
// it back; and the monitor itself (object/monitor.c, embedded as Source,
// compiled by Build: per-number counts, numbers failed with EPERM,
// policies P = (syscalls, (subject comm, object path), record | block)
// and an event ring, in a shared area the host reads from the guest's RAM
// and writes through the gdbstub: EncodePolicies, DecodeEvents). The
// monitor calls the syscall as a tail call, so a task blocked in a
// syscall holds no frame of it.
//
// Session is the service's life cycle for one guest: Start (attach,
// catch, inject, hook, rules), SetPolicies (rules changed in place),
// Poll (events read from RAM, the guest never stopped), Stop (unhook,
// wait until no task is in the monitor's check, synchronize_rcu_tasks in
// the guest, free). The agent runs one per VM whose policy asks for it.
//
// Session.Check is the protection: the hooked call, the monitor's code
// and the syscall entry MSR (LSTAR, read by the monitor every 1,024
// syscalls into its shared area, since the gdbstub cannot read MSRs) are
// compared from the guest's RAM with what was written, and put back
// (LSTAR by the guest kernel, on every CPU) when they differ.
//
// Not built yet: write watchpoints, kernels that dispatch through
// sys_call_table.
package kmon
