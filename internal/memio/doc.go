// Package memio holds bytes in memory behind the interfaces the parsers of
// untrusted images read through (io.ReaderAt): tests and fuzzers build
// disks, file systems and guest memory in a Bytes and hand it to the code
// under test, which must cope with reads that fall outside or run short.
package memio
