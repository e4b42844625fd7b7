// Package linuxkern recovers Linux kernel semantics from guest physical
// memory alone: no System.map, no debug package, no profile. It starts with
// the kernel's own VMCOREINFO note (release, KASLR offset, phys_base,
// symbol addresses), which the guest can write and so is cross-checked
// against memory before it is believed. From there: processes (the task
// list and a fingerprint scan), modules, what each process holds (fd
// tables, sockets, maple-tree memory maps, arguments through its own page
// tables) and the kernel's integrity (CheckIntegrity: the syscall path and
// table, the IDT, function entries, ftrace and kprobe registrations, decoded
// with x86asm; CompareImage: the code and table against the kernel's own
// image, LoadImage unpacking it). Every parser here reads untrusted
// bytes: lengths are bounded and malformed input is an error, never a panic.
package linuxkern
