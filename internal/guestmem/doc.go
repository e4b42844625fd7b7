// Package guestmem reads a guest's physical memory from the host, without
// anything inside the guest: today the live RAM of a QEMU guest started with
// a shared memory-backend-file, mapped read-only (zero copy). Reads are
// bounds-checked: the guest owns every byte, the host trusts none of them.
// ELF cores (QMP dump-guest-memory), raw dumps and LiME files come next
// behind the same io.ReaderAt.
package guestmem
