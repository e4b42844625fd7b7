package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Import makes inventory records of what a hypervisor already knows, so
// that operators need not type VMs in. The records are proposals: the
// admin's PUT validates them like any other (roots, tenants, ports).

// maxImport bounds a document to import.
const maxImport = 8 << 20

// FromLibvirt makes records of one libvirt domain's XML (virsh dumpxml):
// a record per interface with a target device (the switch port), named
// after the VM. The VM's host resources go on its first interface's
// record: a file-backed disk (bitmap mode: the block node is libvirt's
// "libvirt-N-format" for the disk's source index), the QMP socket and the
// RAM file when the domain's qemu:commandline gives them (libvirt keeps
// its own monitor socket to itself, so secaas needs a second one). What
// could not be filled in is said in notes.
func FromLibvirt(doc []byte, tenantID, host string) (ports []Port, notes []string, err error) {
	if len(doc) > maxImport {
		return nil, nil, errors.New("libvirt domain XML too large")
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(doc)); err != nil {
		return nil, nil, fmt.Errorf("libvirt domain XML: %w", err)
	}
	if d.Devices == nil {
		return nil, nil, fmt.Errorf("libvirt domain %q has no devices", d.Name)
	}
	vm := d.Name
	for _, ifc := range d.Devices.Interfaces {
		if ifc.Target == nil || ifc.Target.Dev == "" {
			notes = append(notes, fmt.Sprintf("an interface of %s has no target device (is the domain running?): skipped", vm))
			continue
		}
		ports = append(ports, Port{Name: ifc.Target.Dev, Tenant: tenantID, Host: host, VM: vm})
	}
	if len(ports) == 0 {
		return nil, notes, fmt.Errorf("libvirt domain %q: no interface with a target device", vm)
	}
	first := &ports[0]
	qmp, mem, gdb := qemuArgs(d.QEMUCommandline)
	first.QMP, first.Memory, first.GDB = qmp, mem, gdb
	if qmp == "" {
		notes = append(notes, vm+": no QMP socket of secaas's own in qemu:commandline (-qmp unix:PATH,server=on,wait=off): no HyperAV bitmap mode")
	}
	if mem == "" {
		notes = append(notes, vm+": no shared RAM file in qemu:commandline (memory-backend-file,mem-path=PATH,share=on): no memory monitoring")
	}
	if gdb == "" {
		notes = append(notes, vm+": no gdbstub socket in qemu:commandline (-gdb unix:PATH,server=on,wait=off): no syscall monitoring")
	}
	for _, disk := range d.Devices.Disks {
		if disk.Device != "" && disk.Device != "disk" || disk.Source == nil || disk.Source.File == nil || disk.Source.File.File == "" {
			continue
		}
		if first.Disk != nil {
			notes = append(notes, fmt.Sprintf("%s: disk %s not imported (HyperAV watches one disk per VM)", vm, disk.Source.File.File))
			continue
		}
		dk := &Disk{Image: disk.Source.File.File, Mode: "bitmap"}
		if disk.Source.Index != 0 {
			dk.Node = fmt.Sprintf("libvirt-%d-format", disk.Source.Index)
		}
		if disk.Alias != nil {
			dk.Device = disk.Alias.Name
		}
		if qmp == "" || dk.Node == "" {
			notes = append(notes, fmt.Sprintf("%s: disk %s needs a QMP socket and the live XML's source index for bitmap mode: not imported", vm, dk.Image))
			continue
		}
		first.Disk = dk
	}
	return ports, notes, nil
}

// qemuArgs finds secaas's QMP socket, the shared RAM file and the
// gdbstub socket in a domain's extra QEMU arguments.
func qemuArgs(cl *libvirtxml.DomainQEMUCommandline) (qmp, mem, gdb string) {
	if cl == nil {
		return "", "", ""
	}
	var args []string
	for _, a := range cl.Args {
		args = append(args, a.Value)
	}
	chardevs := map[string]string{} // id -> unix socket path
	for i := 0; i+1 < len(args); i++ {
		opt, val := args[i], args[i+1]
		switch opt {
		case "-qmp":
			if p, ok := strings.CutPrefix(val, "unix:"); ok {
				qmp, _, _ = strings.Cut(p, ",")
			}
		case "-gdb":
			if p, ok := strings.CutPrefix(val, "unix:"); ok {
				gdb, _, _ = strings.Cut(p, ",")
			}
		case "-chardev":
			kv := options(val)
			if strings.HasPrefix(val, "socket,") && kv["id"] != "" && kv["path"] != "" {
				chardevs[kv["id"]] = kv["path"]
			}
		case "-mon":
			if kv := options(val); kv["mode"] == "control" && chardevs[kv["chardev"]] != "" && qmp == "" {
				qmp = chardevs[kv["chardev"]]
			}
		case "-object":
			if kv := options(val); strings.HasPrefix(val, "memory-backend-file,") && kv["mem-path"] != "" &&
				(kv["share"] == "on" || kv["share"] == "yes" || kv["share"] == "true") {
				mem = kv["mem-path"]
			}
		}
	}
	return qmp, mem, gdb
}

// options splits a QEMU option string "type,k=v,k=v".
func options(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}

// FromOVS makes records of Open vSwitch's interfaces as
// `ovs-vsctl --format=json --columns=name,external_ids list Interface`
// prints them: one per interface whose external_ids name a VM (vm-id,
// vm-uuid; iface-id and attached-mac as integration tools set them),
// leased to tenantID on host. Interfaces that name no VM are left out.
func FromOVS(doc []byte, tenantID, host string) ([]Port, error) {
	if len(doc) > maxImport {
		return nil, errors.New("ovs-vsctl output too large")
	}
	var t struct {
		Headings []string            `json:"headings"`
		Data     [][]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(doc, &t); err != nil {
		return nil, fmt.Errorf("ovs-vsctl JSON: %w", err)
	}
	name, ext := slices.Index(t.Headings, "name"), slices.Index(t.Headings, "external_ids")
	if name < 0 || ext < 0 {
		return nil, errors.New("ovs-vsctl JSON: columns name and external_ids are needed")
	}
	var out []Port
	for _, row := range t.Data {
		if len(row) <= max(name, ext) {
			return nil, errors.New("ovs-vsctl JSON: short row")
		}
		var n string
		if err := json.Unmarshal(row[name], &n); err != nil {
			return nil, fmt.Errorf("ovs-vsctl JSON: interface name: %w", err)
		}
		ids, err := ovsMap(row[ext])
		if err != nil {
			return nil, fmt.Errorf("ovs-vsctl JSON: external_ids of %s: %w", n, err)
		}
		vm := ids["vm-id"]
		if vm == "" {
			vm = ids["vm-uuid"]
		}
		if vm == "" {
			continue
		}
		out = append(out, Port{Name: n, Tenant: tenantID, Host: host, VM: vm})
	}
	slices.SortFunc(out, func(a, b Port) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ovsMap decodes an OVSDB map ["map", [[k, v], ...]].
func ovsMap(raw json.RawMessage) (map[string]string, error) {
	var m []json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || len(m) != 2 {
		return nil, errors.New("not an OVSDB map")
	}
	var tag string
	if err := json.Unmarshal(m[0], &tag); err != nil || tag != "map" {
		return nil, errors.New("not an OVSDB map")
	}
	var pairs [][2]string
	if err := json.Unmarshal(m[1], &pairs); err != nil {
		return nil, fmt.Errorf("OVSDB map of strings: %w", err)
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		out[p[0]] = p[1]
	}
	return out, nil
}
