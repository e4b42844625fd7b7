// Package ntfs finds files in an NTFS file system and the clusters that
// hold their data, on top of go-ntfs (www.velocidex.com/golang/go-ntfs,
// Apache-2.0), which parses the boot sector, the MFT and directory
// indexes. This package adds what HyperAV needs and the library does not
// expose: the disk byte ranges of a file's unnamed $DATA stream in file
// order (from its run lists, across every VCN attribute), its size and MFT
// record number, and whether the data is resident (stored in the MFT
// record itself). Compressed and encrypted files are refused: their
// clusters do not hold the bytes a scanner must see.
//
// The library was not written for hostile input: every call into it is
// guarded, so a malformed file system gives an error, never a panic, and
// reads are bounded (MaxFileSize).
package ntfs
