// Package hyperav is the 2018 paper's HyperAV on stock QEMU: it maps a file
// of a VM's disk to the disk sectors that hold it (reading the image and its
// ext4 file system on the host, without the guest), keeps per-disk sector
// state — CLEAN, WRITTEN, INFECTED — as compact bitmaps at a fixed
// granularity, and scans a file only when one of its sectors was written
// since its last scan: otherwise the cached verdict is returned without
// reading a byte. Writes come from QEMU's dirty bitmaps (bitmap mode) or
// from secaas's own front in the VM's I/O path (front mode: a vhost-user-blk
// back-end or an NBD server, writing through the host's page cache or
// around it with O_DIRECT), which can also isolate infected sectors (the
// guest reads zeros). The service opens the image, dials QMP and the guest
// port and creates its front's socket through a hostpath.Host: the daemon
// confines them to its host roots.
package hyperav
