// Package lab builds real test networks and guests on the host.
//
// Networks: network namespaces with a veth pair each stand in for VMs,
// attached to an Open vSwitch bridge under the VM's port name. Tests, the
// demo and the benchmarks use it to send real packets through the real
// switch. Everything it creates carries a caller-chosen prefix, and
// removing a host touches only what its own namespace holds, so two labs
// of one policy never delete each other's links. Hypervisors (namespaces
// that each run a private Open vSwitch, joined by an underlay bridge)
// stand in for hosts of a fleet, with VXLAN between their bridges.
//
// Guests: Debian's own kernel with a busybox initramfs under QEMU, RAM in a
// shared file, QMP, gdbstub and a console. The accelerator is chosen by
// proof (ChooseAccel, SECAAS_ACCEL=auto|kvm|tcg): KVM only after a probe
// guest reached its init under it, else TCG; a device node that opens is
// no proof, since some hosts have a /dev/kvm that cannot run a guest.
// Test modules for the guests (rootkit/: a DKOM rootkit, and a tamperer
// that attacks an injected syscall monitor) are built against each cached
// kernel's headers by scripts/guest-kernel.sh.
package lab
