package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"

	"secaas/internal/controller"
	"secaas/internal/inventory"
)

func inventorySet(ctx context.Context, env *Env, args []string) error {
	var p inventory.Port
	var d inventory.Disk
	c, pos, err := simple("inventory set", env, args, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&p.Tenant, "tenant", "", "tenant the port is leased to")
		fs.StringVar(&p.Host, "host", "", "the hypervisor host the port is on (an agent's --node; default: the controller's)")
		fs.BoolVar(&p.Uplink, "uplink", false, "the port leads outside a domain (router, NIC): a domain's uplink, not a VM")
		fs.StringVar(&p.VM, "vm", "", "the hypervisor's name of the VM on the port (information)")
		fs.StringVar(&p.Memory, "memory", "", "the VM's RAM file (QEMU memory-backend-file, share=on), beneath the daemon's --shm-root")
		fs.StringVar(&p.QMP, "qmp", "", "the VM's QMP socket, beneath the daemon's --run-root")
		fs.StringVar(&p.GDB, "gdb", "", "the VM's gdbstub socket (QEMU -gdb unix:PATH,server=on,wait=off), beneath the daemon's --run-root")
		fs.StringVar(&p.Kernel, "kernel", "", "the guest's own kernel image (vmlinuz), beneath the daemon's --image-root: memory monitoring compares the running kernel with it")
		fs.StringVar(&d.Image, "disk", "", "the VM's disk image, beneath the daemon's --image-root")
		fs.StringVar(&d.Mode, "disk-mode", "bitmap", "bitmap (QEMU's dirty bitmap via --qmp) or front (secaas serves the disk on --socket)")
		fs.StringVar(&d.Node, "node", "", "the disk's block node (bitmap mode)")
		fs.StringVar(&d.Device, "device", "", "the disk's qdev id or QOM path (bitmap mode: quarantine zeroes through it)")
		fs.StringVar(&d.Socket, "socket", "", "unix socket secaas serves the disk on, beneath --run-root (front mode)")
		fs.StringVar(&d.Transport, "transport", "", "front mode: nbd (default) or vhost-user")
		fs.StringVar(&d.Cache, "cache", "", "front mode: writeback (default) or none (O_DIRECT)")
		fs.StringVar(&d.GuestPort, "guest-port", "", "host side of the VM's virtio-serial port secaas.0 (for secaas-guest), beneath --run-root")
	})
	if err != nil {
		return err
	}
	p.Name = pos[0]
	if d.Image != "" {
		p.Disk = &d
	}
	var out inventory.Port
	if err := c.do(ctx, "PUT", "/v1/inventory/ports/"+url.PathEscape(p.Name), p, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}

func inventoryList(ctx context.Context, env *Env, args []string) error {
	c, _, format, err := readVerb("inventory list", env, args, 0, nil)
	if err != nil {
		return err
	}
	var out []inventory.Port
	if err := c.do(ctx, "GET", "/v1/inventory/ports", nil, &out); err != nil {
		return err
	}
	return render(env, format, out, func(t *table) { portRows(t, out) })
}

// portRows renders inventory records.
func portRows(t *table, out []inventory.Port) {
	head := []string{"PORT", "TENANT", "HOST", "KIND", "VM", "MEMORY", "DISK"}
	if t.wide {
		head = append(head, "QMP", "IMAGE", "SOCKET")
	}
	t.row(head...)
	for _, p := range out {
		kind, disk, image, socket := "vm", "-", "-", "-"
		if p.Uplink {
			kind = "uplink"
		}
		if p.Disk != nil {
			disk, image, socket = p.Disk.Mode, p.Disk.Image, orDash(p.Disk.Socket)
			if p.Disk.Transport != "" {
				disk += "/" + p.Disk.Transport
			}
		}
		r := []string{p.Name, p.Tenant, orDash(p.Host), kind, orDash(p.VM), orDash(p.Memory), disk}
		if t.wide {
			r = append(r, orDash(p.QMP), image, socket)
		}
		t.row(r...)
	}
}

func inventoryDelete(ctx context.Context, env *Env, args []string) error {
	c, pos, err := simple("inventory delete", env, args, 1, nil)
	if err != nil {
		return err
	}
	if err := c.do(ctx, "DELETE", "/v1/inventory/ports/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "port %s removed from the inventory\n", pos[0])
	return nil
}

func domainStatus(ctx context.Context, env *Env, args []string) error {
	c, pos, format, err := readVerb("domain status", env, args, 1, nil)
	if err != nil {
		return err
	}
	var st controller.DomainStatus
	if err := c.do(ctx, "GET", "/v1/domains/"+url.PathEscape(pos[0])+"/status", nil, &st); err != nil {
		return err
	}
	return render(env, format, st, func(t *table) {
		t.row("HOST", "STATE", "ENFORCES", "WANTED", "MESSAGE")
		for _, h := range st.Hosts {
			t.row(h.Host, h.State, revision(h.Revision), revision(st.Revision), orDash(h.Message))
		}
	})
}

func revision(r int) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprint(r)
}

func hostList(ctx context.Context, env *Env, args []string) error {
	c, _, format, err := readVerb("host list", env, args, 0, nil)
	if err != nil {
		return err
	}
	var hs []controller.HostView
	if err := c.do(ctx, "GET", "/v1/hosts", nil, &hs); err != nil {
		return err
	}
	return render(env, format, hs, func(t *table) {
		t.row("HOST", "STATE", "PUBLISHED", "SEEN", "APPLIED", "TUNNEL", "LAST REPORT", "ERROR")
		for _, h := range hs {
			seen := "-"
			if !h.SeenAt.IsZero() {
				seen = h.SeenAt.Format("2006-01-02 15:04:05")
			}
			t.row(h.Name, h.State, fmt.Sprint(h.Published), fmt.Sprint(h.Generation), fmt.Sprint(h.Applied), orDash(h.Endpoint), seen, orDash(h.Error))
		}
	})
}

// inventoryImport makes inventory records of a libvirt domain's XML or
// of this host's Open vSwitch interfaces, and sets them (or, with
// --dry-run, shows them).
func inventoryImport(ctx context.Context, env *Env, args []string) error {
	var tenantID, host, libvirt string
	var ovs, dry bool
	c, _, format, err := readVerb("inventory import", env, args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&tenantID, "tenant", "", "tenant the ports are leased to")
		fs.StringVar(&host, "host", "", "the hypervisor host the ports are on (an agent's --node; default: the controller's)")
		fs.StringVar(&libvirt, "libvirt", "", "a libvirt domain's XML (virsh dumpxml NAME), - for stdin")
		fs.BoolVar(&ovs, "ovs", false, "this host's Open vSwitch interfaces whose external_ids name a VM (vm-id, vm-uuid)")
		fs.BoolVar(&dry, "dry-run", false, "show the records, set nothing")
	})
	if err != nil {
		return err
	}
	if (libvirt == "") == !ovs {
		return usageError{errors.New("give one source: --libvirt FILE or --ovs")}
	}
	var ports []inventory.Port
	if ovs {
		doc, err := exec.CommandContext(ctx, "ovs-vsctl", "--timeout=10", "--format=json", "--columns=name,external_ids", "list", "Interface").Output()
		if err != nil {
			return fmt.Errorf("ovs-vsctl: %w", err)
		}
		if ports, err = inventory.FromOVS(doc, tenantID, host); err != nil {
			return err
		}
	} else {
		var doc []byte
		if libvirt == "-" {
			if env.Stdin == nil {
				return usageError{errors.New("--libvirt -: no standard input")}
			}
			doc, err = io.ReadAll(io.LimitReader(env.Stdin, 16<<20))
		} else {
			doc, err = os.ReadFile(libvirt)
		}
		if err != nil {
			return err
		}
		var notes []string
		if ports, notes, err = inventory.FromLibvirt(doc, tenantID, host); err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintln(env.Stderr, "note:", n)
		}
	}
	if !dry {
		for i, p := range ports {
			if err := c.do(ctx, "PUT", "/v1/inventory/ports/"+url.PathEscape(p.Name), p, &ports[i]); err != nil {
				return err
			}
		}
	}
	return render(env, format, ports, func(t *table) { portRows(t, ports) })
}
