// Package qmp is a small client of the QEMU Machine Protocol: it connects to
// a QMP socket, negotiates capabilities, runs commands and returns their
// results or QEMU's error (class and description). Asynchronous events that
// arrive between replies are kept, bounded, for whoever asks. Memory
// monitoring uses it to dump guest memory; HyperAV to drive dirty bitmaps
// and NBD exports.
package qmp
