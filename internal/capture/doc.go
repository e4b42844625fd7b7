// Package capture reads packets: pcap and pcapng files (pure Go, no cgo)
// and, later, live AF_PACKET sockets on an OVS mirror port. Readers hand out
// one packet at a time in a buffer they reuse, so the hot path allocates
// nothing per packet. Decode turns a frame into the fixed-size Meta the
// feature extractor needs (addresses, protocol, ports, TCP flags, TTL,
// length), also without allocating.
//
// Captures are untrusted input: a malformed or truncated file ends in a
// *FormatError that names the byte offset, never in a panic; sizes are
// bounded (MaxPacket) before anything is allocated.
package capture
