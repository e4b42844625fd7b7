package inventory

import (
	"os"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFromLibvirtRunning: a running domain's XML gives a record per
// interface; the first carries the QMP socket (a -chardev/-mon pair), the
// shared RAM file, the gdbstub socket, and the first disk (bitmap mode, libvirt's node name,
// its alias); a CD-ROM is no disk, and a second disk is noted, not
// imported. The records pass validation against the roots.
func TestFromLibvirtRunning(t *testing.T) {
	ports, notes, err := FromLibvirt(readTestdata(t, "libvirt-running.xml"), "acme", "hv1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0].Name != "web01-eth0" || ports[1].Name != "web01-eth1" {
		t.Fatalf("ports %+v", ports)
	}
	p := ports[0]
	if p.VM != "web01" || p.Tenant != "acme" || p.Host != "hv1" || p.QMP != "/run/secaas/web01.qmp" || p.Memory != "/dev/shm/web01" || p.GDB != "/run/secaas/web01.gdb" {
		t.Fatalf("first record %+v", p)
	}
	if d := p.Disk; d == nil || d.Image != "/var/lib/secaas/images/web01.qcow2" || d.Node != "libvirt-2-format" || d.Device != "virtio-disk0" || d.Mode != "bitmap" {
		t.Fatalf("disk %+v", p.Disk)
	}
	if ports[1].Disk != nil || ports[1].QMP != "" {
		t.Fatalf("second record has resources: %+v", ports[1])
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "web01-data.raw") {
		t.Fatalf("notes %q", notes)
	}
	h := Host{Reserved: []string{"secaas0"}, Roots: []string{"/var/lib/secaas/images", "/run/secaas", "/dev/shm"}}
	for _, p := range ports {
		if err := p.Validate(h); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
}

// TestFromLibvirtDefined: a domain that is not running has no source
// index: its disk is noted, not guessed; an interface without a target is
// skipped and noted; -qmp is understood.
func TestFromLibvirtDefined(t *testing.T) {
	ports, notes, err := FromLibvirt(readTestdata(t, "libvirt-defined.xml"), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 1 || ports[0].Name != "db02-eth0" || ports[0].QMP != "/run/secaas/db02.qmp" || ports[0].Disk != nil {
		t.Fatalf("ports %+v", ports)
	}
	all := strings.Join(notes, "\n")
	for _, want := range []string{"no target device", "source index", "no shared RAM file"} {
		if !strings.Contains(all, want) {
			t.Errorf("notes lack %q:\n%s", want, all)
		}
	}
	for _, bad := range []string{"", "<domain>", "<domain><name>x</name><devices></devices></domain>", "not xml"} {
		if _, _, err := FromLibvirt([]byte(bad), "acme", ""); err == nil {
			t.Errorf("%q: imported", bad)
		}
	}
}

// TestFromOVS: interfaces whose external_ids name a VM become records
// (real ovs-vsctl output); others are left out; malformed output is an
// error.
func TestFromOVS(t *testing.T) {
	doc := `{"data":[["sctx1",["map",[["attached-mac","52:54:00:aa:bb:01"],["iface-id","port-1"],["vm-id","7c1e0c2a-3f00-4b7e-9a55-1d2c3b4a5f60"]]]],["sctx2",["map",[]]],["a0",["map",[["vm-uuid","u2"]]]]],"headings":["name","external_ids"]}`
	ports, err := FromOVS([]byte(doc), "acme", "hv2")
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 2 || ports[0].Name != "a0" || ports[0].VM != "u2" || ports[1].Name != "sctx1" ||
		ports[1].VM != "7c1e0c2a-3f00-4b7e-9a55-1d2c3b4a5f60" || ports[1].Host != "hv2" {
		t.Fatalf("ports %+v", ports)
	}
	for _, bad := range []string{`{}`, `{"headings":["name"],"data":[]}`, `{"headings":["name","external_ids"],"data":[["x"]]}`,
		`{"headings":["name","external_ids"],"data":[["x",["set",[]]]]}`, `[`} {
		if _, err := FromOVS([]byte(bad), "acme", ""); err == nil {
			t.Errorf("%s: imported", bad)
		}
	}
}

// FuzzImport: neither importer panics on any input, and what they make
// carries the tenant and host given.
func FuzzImport(f *testing.F) {
	for _, name := range []string{"libvirt-running.xml", "libvirt-defined.xml"} {
		b, _ := os.ReadFile("testdata/" + name)
		f.Add(b)
	}
	f.Add([]byte(`{"data":[["p",["map",[["vm-id","x"]]]]],"headings":["name","external_ids"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ports, _, err := FromLibvirt(b, "acme", "hv")
		for _, p := range ports {
			if err != nil || p.Tenant != "acme" || p.Host != "hv" {
				t.Fatalf("%+v %v", p, err)
			}
		}
		ports, err = FromOVS(b, "acme", "hv")
		for _, p := range ports {
			if err != nil || p.Tenant != "acme" || p.Host != "hv" {
				t.Fatalf("%+v %v", p, err)
			}
		}
	})
}
