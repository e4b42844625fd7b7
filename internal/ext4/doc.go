// Package ext4 reads an ext4 file system from the host, read-only, to map a
// path to its inode, its data and — what HyperAV needs — the byte ranges of
// the volume its data occupies (the file's extents). It follows the
// on-disk format: superblock, group descriptors (32- or 64-byte), inodes,
// extent trees, linear and hashed (htree) directories, inline data, and
// the old block maps of ext2/ext3 files. When the superblock says the
// journal needs recovery (a mounted or crashed file system), the journal's
// committed transactions are laid over the volume, in memory, as the
// kernel would replay them: a running guest's newest metadata is often
// only there. The image itself is never written.
//
// The guest wrote every byte: depths, counts, block numbers and sizes are
// bounded and checked, and the reader is fuzzed.
package ext4
