// Package kmon is syscall monitoring by injection into a running Linux
// guest through QEMU's gdbstub (package gdbstub). Built so far: the
// paper's bottom-up function call channel (Call: a vCPU caught in process
// context on the syscall path is made to call a guest kernel function
// with arguments and return into a breakpoint, and is then put back
// exactly as it was) and Inject, which allocates module memory in the
// guest (module_alloc), makes it executable (set_memory_x), and writes an
// object relocated against the guest's own kallsyms (package elfreloc),
// leaving nothing in the guest's module list. The monitoring object, the
// dispatch hook, policies, protection and removal are not built yet.
package kmon
