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
// The traffic lab (RunTraffic) mirrors a server's port and captures it
// while real clients use the server and real tools attack it, writing a
// capture and its labels. Its benign side is the varied profile by
// default (300 Zipf-popular clients at OS-default TTLs minus hops; HTTP,
// DNS over UDP and TCP, SMTP, POP3 and real SSH on a daily cycle with
// AR(1) noise; long and short sessions) or the first lab's (BenignPaper);
// its attacks are the paper's nmap and hping3 settings, slow ones (nmap
// -T2, a 20 packets/s SYN flood, SSH password guessing) and replays of
// real captures.
//
// Guests: Debian's own kernel with a busybox initramfs under QEMU, RAM in a
// shared file, QMP, gdbstub and a console, optionally disks and a NIC on a
// host tap (GuestConfig.Tap). The accelerator is chosen by
// proof (ChooseAccel, SECAAS_ACCEL=auto|kvm|tcg): KVM only after a probe
// guest reached its init under it, else TCG; a device node that opens is
// no proof, since some hosts have a /dev/kvm that cannot run a guest.
// Test modules for the guests (rootkit/: a DKOM rootkit, a hooker that
// diverts syscalls and hides a socket through ftrace, and a tamperer that
// attacks an injected syscall monitor) are built against each cached
// kernel's headers by scripts/guest-kernel.sh.
package lab
