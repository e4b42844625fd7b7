// Package disk reads VM disk images on the host, read-only and without the
// VM: raw images and qcow2 (version 2 and 3, no backing file, no
// compression, no encryption — each refused with a clear error), and
// their partition tables (MBR, GPT). A partition is an io.ReaderAt of its
// own, at a known byte offset in the disk, so a file system on it can map
// a file to disk sectors. Every byte of an image is untrusted (the guest
// wrote it): sizes and offsets are bounded, and the parsers are fuzzed.
package disk
