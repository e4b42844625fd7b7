// Package nbd speaks the Network Block Device protocol (fixed newstyle
// handshake, structured replies, meta contexts): a client, with which
// HyperAV reads a disk through QEMU's NBD export and asks for the
// qemu:dirty-bitmap:NAME block status, and a server, which is HyperAV's
// front in a VM's I/O path (QEMU attaches it with -blockdev driver=nbd): it
// sees every write as it happens, can make isolated ranges read as zeros,
// and honours FLUSH so that no acknowledged write is lost.
//
// Everything read from the peer is untrusted: lengths are bounded, and the
// reply and request parsers are fuzzed.
package nbd
