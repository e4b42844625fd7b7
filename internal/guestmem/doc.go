// Package guestmem reads a guest's physical memory from the host, without
// anything inside the guest. One type, Mem, covers every source, each mapped
// read-only (zero copy) and seen as segments of guest physical memory:
//
//   - the live RAM of a running QEMU guest started with a shared
//     memory-backend-file (OpenShared), laid out around the pc machine's
//     PCI hole (3 GiB below it, the rest from 4 GiB up);
//   - ELF cores, as QMP dump-guest-memory writes them (one PT_LOAD per RAM
//     block, at p_paddr);
//   - LiME files (range headers, each followed by its bytes);
//   - raw dumps (file offset = physical address).
//
// Reads are bounds-checked and addresses no segment holds are an error
// (ErrNotPresent), never zeros. Dump parsers treat every byte as hostile:
// a malformed file gives a FormatError with the byte offset; they are fuzzed.
package guestmem
