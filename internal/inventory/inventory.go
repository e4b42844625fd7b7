package inventory

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"secaas/internal/tenant"
)

// Port is the host's record of one switch port.
type Port struct {
	Name   string `json:"name" yaml:"name"`
	Tenant string `json:"tenant" yaml:"tenant"`
	// Uplink: the port leads outside a domain (a router, a NIC) and may be
	// a domain's uplink; it is no VM's port.
	Uplink bool `json:"uplink,omitempty" yaml:"uplink,omitempty"`
	// Host is the hypervisor host the port is on: the node name of the
	// agent that enforces it (secaasd --node). Empty: the control plane's
	// default host. Per-VM services run on this host only.
	Host string `json:"host,omitempty" yaml:"host,omitempty"`
	// VM is the hypervisor's name of the VM on the port (a libvirt domain,
	// a lab guest); information only.
	VM string `json:"vm,omitempty" yaml:"vm,omitempty"`
	// Memory is the VM's RAM as the host sees it: the shared
	// memory-backend-file of its QEMU process (e.g. /dev/shm/NAME).
	Memory string `json:"memory,omitempty" yaml:"memory,omitempty"`
	// QMP is the VM's QMP socket.
	QMP string `json:"qmp,omitempty" yaml:"qmp,omitempty"`
	// GDB is the VM's gdbstub socket (QEMU's -gdb unix:PATH,server=on,
	// wait=off), for syscall monitoring.
	GDB string `json:"gdb,omitempty" yaml:"gdb,omitempty"`
	// Kernel is the guest's own kernel image (its vmlinuz) on the host:
	// memory monitoring compares the running kernel's code with it.
	Kernel string `json:"kernel,omitempty" yaml:"kernel,omitempty"`
	Disk   *Disk  `json:"disk,omitempty" yaml:"disk,omitempty"`
}

// Disk is how HyperAV reaches the VM's disk on this host.
type Disk struct {
	// Image is the disk image (front mode: raw).
	Image string `json:"image" yaml:"image"`
	// Mode: "bitmap" (QEMU's dirty bitmap through the VM's QMP socket) or
	// "front" (secaas serves the image in the VM's I/O path, over NBD or
	// vhost-user, at Socket, where QEMU is told to connect).
	Mode string `json:"mode" yaml:"mode"`
	// Node is the disk's block node (bitmap); Device its qdev id or QOM
	// path, through which bitmap mode zeroes quarantined sectors.
	Node   string `json:"node,omitempty" yaml:"node,omitempty"`
	Device string `json:"device,omitempty" yaml:"device,omitempty"`
	// Socket (front) is created by secaas; Transport "nbd" (default) or
	// "vhost-user"; Cache "writeback" (default) or "none" (O_DIRECT).
	Socket    string `json:"socket,omitempty" yaml:"socket,omitempty"`
	Transport string `json:"transport,omitempty" yaml:"transport,omitempty"`
	Cache     string `json:"cache,omitempty" yaml:"cache,omitempty"`
	// GuestPort is the host side of the VM's virtio-serial port
	// "secaas.0" (a unix socket QEMU listens on), for the guest tool.
	GuestPort string `json:"guest_port,omitempty" yaml:"guest_port,omitempty"`
}

// Paths lists the record's host paths with their field names.
func (p Port) Paths() [][2]string {
	var out [][2]string
	add := func(field, v string) {
		if v != "" {
			out = append(out, [2]string{field, v})
		}
	}
	add("memory", p.Memory)
	add("qmp", p.QMP)
	add("gdb", p.GDB)
	add("kernel", p.Kernel)
	if d := p.Disk; d != nil {
		add("disk.image", d.Image)
		add("disk.socket", d.Socket)
		add("disk.guest_port", d.GuestPort)
	}
	return out
}

// Public is the record as a tenant sees it: no host paths, only which
// resources exist.
func (p Port) Public() Port {
	out := Port{Name: p.Name, Tenant: p.Tenant, Uplink: p.Uplink, VM: p.VM, Host: p.Host}
	if p.Memory != "" {
		out.Memory = "(host)"
	}
	if p.QMP != "" {
		out.QMP = "(host)"
	}
	if p.GDB != "" {
		out.GDB = "(host)"
	}
	if p.Kernel != "" {
		out.Kernel = "(host)"
	}
	if p.Disk != nil {
		out.Disk = &Disk{Mode: p.Disk.Mode, Transport: p.Disk.Transport, Image: "(host)"}
	}
	return out
}

// Host is what validation needs to know of the host.
type Host struct {
	// Reserved are port names no record may use: the bridge's own port.
	Reserved []string
	// Roots are the directories host paths must lie beneath (empty: no
	// path is accepted).
	Roots []string
}

// Validate checks a record against the host.
func (p Port) Validate(h Host) error {
	var probs []string
	bad := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	if !tenant.PortNameOK(p.Name) {
		bad("port %q: 1-15 letters, digits, '.', '_' or '-'", p.Name)
	}
	if IsReserved(p.Name, h.Reserved) {
		bad("port %q is reserved (the bridge's own port)", p.Name)
	}
	if !tenant.ValidName(p.Tenant) {
		bad("port %q: tenant %q is not a tenant id", p.Name, p.Tenant)
	}
	if p.Host != "" && !tenant.ValidName(p.Host) {
		bad("port %q: host %q: 1-63 letters, digits, '.', '_' or '-'", p.Name, p.Host)
	}
	if len(p.VM) > 253 || strings.ContainsFunc(p.VM, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		bad("port %q: vm name too long or with control characters", p.Name)
	}
	if p.Uplink && (p.Memory != "" || p.QMP != "" || p.Disk != nil || p.VM != "" || p.Kernel != "") {
		bad("port %q: an uplink has no VM, memory, qmp, kernel or disk", p.Name)
	}
	for _, f := range p.Paths() {
		if err := beneath(f[1], h.Roots); err != nil {
			bad("port %q: %s: %v", p.Name, f[0], err)
		}
	}
	if d := p.Disk; d != nil {
		if d.Image == "" {
			bad("port %q: disk.image is required", p.Name)
		}
		switch d.Mode {
		case "bitmap":
			if p.QMP == "" || d.Node == "" {
				bad("port %q: bitmap mode needs the VM's qmp socket and disk.node", p.Name)
			}
			if d.Socket != "" || d.Transport != "" || d.Cache != "" {
				bad("port %q: disk.socket, transport and cache are for front mode", p.Name)
			}
		case "front":
			if d.Socket == "" {
				bad("port %q: front mode needs disk.socket", p.Name)
			}
			if d.Transport != "" && d.Transport != "nbd" && d.Transport != "vhost-user" {
				bad("port %q: disk.transport %q is neither nbd nor vhost-user", p.Name, d.Transport)
			}
			if d.Cache != "" && d.Cache != "writeback" && d.Cache != "none" {
				bad("port %q: disk.cache %q is neither writeback nor none", p.Name, d.Cache)
			}
		default:
			bad("port %q: disk.mode %q is neither bitmap nor front", p.Name, d.Mode)
		}
		if len(d.Node) > 128 || len(d.Device) > 256 {
			bad("port %q: disk.node or disk.device too long", p.Name)
		}
	}
	if len(probs) > 0 {
		return &tenant.ValidationError{Problems: probs}
	}
	return nil
}

// ErrOutside: a host path is not beneath any configured root.
var ErrOutside = errors.New("not beneath a configured root")

// CheckPath checks a host path by its text alone: absolute, clean (no
// "..", ".", "//" or trailing slash), at most 4096 bytes, without NUL or
// control characters. Package hostpath then resolves it beneath a root.
func CheckPath(name string) error {
	switch {
	case name == "" || len(name) > 4096:
		return fmt.Errorf("path %q: empty or too long", name)
	case !strings.HasPrefix(name, "/"):
		return fmt.Errorf("path %q: not absolute", name)
	case filepath.Clean(name) != name:
		return fmt.Errorf("path %q: not clean (\"..\", \".\", \"//\" or a trailing slash)", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("path %q: control characters", name)
	}
	return nil
}

// beneath checks a path's text and that it lies beneath one of roots.
func beneath(path string, roots []string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	for _, r := range roots {
		if strings.HasPrefix(path, strings.TrimSuffix(r, "/")+"/") {
			return nil
		}
	}
	return fmt.Errorf("%q is %w (%s)", path, ErrOutside, strings.Join(roots, ", "))
}

// IsReserved reports whether name is a port no domain or record may use:
// OpenFlow's LOCAL and the names in reserved (the bridge's own port).
func IsReserved(name string, reserved []string) bool {
	return strings.EqualFold(name, "LOCAL") || slices.Contains(reserved, name)
}

// notLeased is the problem of a domain that binds a port the inventory
// does not lease to its tenant (reported in a tenant.ValidationError).
const notLeased = "port not leased to the tenant"

// Ports indexes records by port name.
type Ports map[string]Port

// On returns the records of the ports on host; records without a host
// are on def (the default host).
func (ps Ports) On(host, def string) Ports {
	out := Ports{}
	for n, p := range ps {
		if p.HostOr(def) == host {
			out[n] = p
		}
	}
	return out
}

// HostOr is the port's host, def when the record names none.
func (p Port) HostOr(def string) string {
	if p.Host == "" {
		return def
	}
	return p.Host
}

// Index makes a Ports of records.
func Index(list []Port) Ports {
	m := make(Ports, len(list))
	for _, p := range list {
		m[p.Name] = p
	}
	return m
}

// CheckDomain checks the ports a domain binds against the inventory:
// every VM port and uplink must be leased to the domain's tenant (VM
// ports not as uplinks, uplinks as uplinks), no domain may bind a reserved
// port, and a VM with memory monitoring or HyperAV needs those resources
// in its port's record. With strict false (the admin), ports the
// inventory does not know may be bound, without resources.
func CheckDomain(d tenant.Domain, inv Ports, reserved []string, strict bool) error {
	var probs []string
	bad := func(format string, a ...any) {
		probs = append(probs, fmt.Sprintf("domain %q (tid %d): ", d.Name, d.TID)+fmt.Sprintf(format, a...))
	}
	lease := func(port, what string, uplink bool) (Port, bool) {
		if IsReserved(port, reserved) {
			bad("%s %q is reserved (the bridge's own port)", what, port)
			return Port{}, false
		}
		p, ok := inv[port]
		switch {
		case !ok && strict:
			bad("%s %q: %s", what, port, notLeased)
		case ok && p.Tenant != d.Tenant:
			bad("%s %q: %s", what, port, notLeased)
		case ok && p.Uplink != uplink && uplink:
			bad("%s %q is a VM's port, not an uplink", what, port)
		case ok && p.Uplink != uplink:
			bad("%s %q is an uplink, not a VM's port", what, port)
		default:
			return p, ok
		}
		return Port{}, false
	}
	for _, u := range d.Uplinks {
		lease(u, "uplink", true)
	}
	for _, s := range d.Subnets {
		for _, vm := range s.VMs {
			p, _ := lease(vm.Port, fmt.Sprintf("vm %q: port", vm.Name), false)
			if vm.VMI != nil && p.Memory == "" {
				bad("vm %q: memory monitoring needs the VM's RAM file in the host inventory of port %q (an admin sets it)", vm.Name, vm.Port)
			}
			if vm.AV != nil && p.Disk == nil {
				bad("vm %q: HyperAV needs the VM's disk in the host inventory of port %q (an admin sets it)", vm.Name, vm.Port)
			}
		}
	}
	if len(probs) > 0 {
		return &tenant.ValidationError{Problems: probs}
	}
	return nil
}
