// Package elfreloc is the relocation engine of syscall monitoring by
// injection (the 2020 paper's Algorithms 1 and 2): it loads an x86-64 ELF
// relocatable object (the monitoring code, built with gcc for the kernel
// code model), lays out its allocatable sections from a base address in
// the guest kernel (each at its alignment, in the object's order),
// resolves the object's undefined symbols against the guest's symbol
// table (recovered from kallsyms, or read in nm format), and applies the
// relocations: R_X86_64_64, _32 (zero-extended), _32S (sign-extended),
// _PC32, _PLT32 (a direct call: no PLT) and _PC64, with the 32-bit ones
// checked for overflow. Any other relocation type, an undefined symbol
// the target lacks, a COMMON symbol or a malformed object is a clear
// error. The result is each section's final bytes and the object's global
// symbols' addresses; nothing here touches a guest.
//
// The engine is checked byte for byte against GNU ld linking the same
// objects at the same addresses with the same symbol values
// (TestSameBytesAsGNULD), and fuzzed. Objects are expected to be built
// like kernel code: -mcmodel=kernel, -mgeneral-regs-only (the kernel
// saves no SSE or x87 state for it: a vectorised loop faults), no unwind
// tables (ld rewrites .eh_frame), -fno-merge-constants (ld tail-merges
// strings), -fno-common.
// It does no I/O.
package elfreloc
