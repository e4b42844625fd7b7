// Package vhostuser is the back-end side of the vhost-user protocol for a
// virtio-blk device: QEMU (the front-end, -device vhost-user-blk-pci)
// hands over the guest's RAM (shared file descriptors) and the addresses
// of the device's virtqueue, and the back-end serves the guest's block
// requests straight from the queue in shared memory. QEMU relays only the
// notifications (a guest kick arrives on an eventfd; the back-end signals
// completions on another), so a request costs no socket round trip, which
// is what an NBD front costs per request.
//
// What is implemented, after the vhost-user specification
// (docs/interop/vhost-user.rst in QEMU) and the virtio 1.1 split ring:
//
//   - messages: GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES (CONFIG only),
//     SET_OWNER, RESET_OWNER, SET_MEM_TABLE, SET_VRING_NUM/ADDR/BASE,
//     GET_VRING_BASE (stops the ring), SET_VRING_KICK/CALL/ERR,
//     SET_VRING_ENABLE, GET_QUEUE_NUM, GET_CONFIG (struct
//     virtio_blk_config); other requests are ignored;
//   - device features: VERSION_1, SEG_MAX, FLUSH; no indirect descriptors,
//     no event index: the guest kicks per batch, the back-end signals per
//     batch unless the guest asked for no interrupts;
//   - requests: IN, OUT, FLUSH, GET_ID; anything else answers UNSUPP.
//
// Hostile guests: every descriptor address is checked against the memory
// table before use; a chain that loops, leaves the table or has no status
// byte stops the queue (the device then needs a reset); a data buffer
// outside RAM or an access past the disk's end answers IOERR. Requests of
// one queue are served in order, one at a time, so a write is applied and
// reported (OnWrite) before its completion is published.
//
// The image (File) may be opened with O_DIRECT; what O_DIRECT refuses
// (guest buffers or offsets not aligned as the host wants) goes through a
// buffered twin of the file, which Linux keeps coherent with it.
package vhostuser
