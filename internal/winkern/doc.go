// Package winkern is the Windows profile of memory monitoring: the 2018
// paper's EPROCESS fingerprint (its Table 1 and Algorithm 2) for Windows 7
// x86 (PAE) and its x64 equivalent, behind the same kind of scanner as the
// Linux one. A scan of physical memory finds EPROCESS candidates by
// fingerprint (dispatcher header type 3 and size, a 32-byte-aligned
// DirectoryTableBase, ThreadListHead pointers in kernel space, CreateTime >
// 0, ExitTime == 0, plus a printable ImageFileName and a pid that is a
// multiple of 4); the System process (pid 4) gives the kernel's page
// tables, through which the ActiveProcessLinks ring — the view Task
// Manager has — is walked. A live candidate missing from the ring is a
// process hidden by DKOM.
//
// No Windows memory image can be obtained on this machine: the profiles'
// offsets are the documented layouts of Windows 7 SP1 (ntoskrnl's public
// symbols, as Volatility's vtypes give them), and the tests build memory
// images from that layout. Windows 10/11 move these members between builds;
// they would need their own profiles.
package winkern
