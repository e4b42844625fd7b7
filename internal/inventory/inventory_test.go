package inventory

import (
	"strings"
	"testing"

	"secaas/internal/tenant"
)

var host = Host{Reserved: []string{"br0"}, Roots: []string{"/srv/images", "/run/secaas", "/dev/shm"}}

func TestValidate(t *testing.T) {
	good := []Port{
		{Name: "vm1", Tenant: "acme"},
		{Name: "up0", Tenant: "acme", Uplink: true},
		{Name: "vm2", Tenant: "acme", VM: "guest-2", Memory: "/dev/shm/g2", QMP: "/run/secaas/g2/qmp.sock",
			Disk: &Disk{Image: "/srv/images/g2.qcow2", Mode: "bitmap", Node: "disk0", Device: "disk0-dev"}},
		{Name: "vm3", Tenant: "acme", Disk: &Disk{Image: "/srv/images/g3.raw", Mode: "front", Socket: "/run/secaas/g3.sock",
			Transport: "vhost-user", Cache: "none", GuestPort: "/run/secaas/g3-port.sock"}},
	}
	for _, p := range good {
		if err := p.Validate(host); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := map[string]Port{
		"name":          {Name: "a/b", Tenant: "acme"},
		"long name":     {Name: "abcdefghijklmnop", Tenant: "acme"},
		"bridge":        {Name: "br0", Tenant: "acme"},
		"LOCAL":         {Name: "local", Tenant: "acme"},
		"tenant":        {Name: "vm1", Tenant: ""},
		"outside":       {Name: "vm1", Tenant: "acme", Memory: "/etc/shadow"},
		"dotdot":        {Name: "vm1", Tenant: "acme", Memory: "/dev/shm/../../etc/shadow"},
		"root itself":   {Name: "vm1", Tenant: "acme", Memory: "/dev/shm"},
		"prefix":        {Name: "vm1", Tenant: "acme", Memory: "/dev/shmevil/x"},
		"relative":      {Name: "vm1", Tenant: "acme", QMP: "run/secaas/q.sock"},
		"control":       {Name: "vm1", Tenant: "acme", QMP: "/run/secaas/q\n.sock"},
		"uplink memory": {Name: "up0", Tenant: "acme", Uplink: true, Memory: "/dev/shm/x"},
		"no image":      {Name: "vm1", Tenant: "acme", Disk: &Disk{Mode: "front", Socket: "/run/secaas/s"}},
		"no mode":       {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x"}},
		"bitmap no qmp": {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x", Mode: "bitmap", Node: "n"}},
		"front socket":  {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x", Mode: "front"}},
		"socket out":    {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x", Mode: "front", Socket: "/etc/x.sock"}},
		"transport":     {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x", Mode: "front", Socket: "/run/secaas/s", Transport: "iscsi"}},
		"guest port":    {Name: "vm1", Tenant: "acme", Disk: &Disk{Image: "/srv/images/x", Mode: "front", Socket: "/run/secaas/s", GuestPort: "/tmp/p"}},
	}
	for name, p := range bad {
		if err := p.Validate(host); err == nil {
			t.Errorf("%s: %+v accepted", name, p)
		}
	}
	if err := (Port{Name: "vm1", Tenant: "acme", Memory: "/dev/shm/x"}).Validate(Host{}); err == nil {
		t.Error("a path accepted with no roots configured")
	}
}

func TestCheckDomain(t *testing.T) {
	inv := Index([]Port{{Name: "pa", Tenant: "acme"}, {Name: "pb", Tenant: "acme"}, {Name: "up", Tenant: "acme", Uplink: true},
		{Name: "other", Tenant: "bob"}})
	dom := func(uplinks []string, ports ...string) tenant.Domain {
		d := tenant.Domain{TID: 5, Name: "d", Tenant: "acme", Uplinks: uplinks, Subnets: []tenant.Subnet{{Name: "s"}}}
		for i, p := range ports {
			d.Subnets[0].VMs = append(d.Subnets[0].VMs, tenant.VM{Name: "v" + string(rune('a'+i)), Port: p})
		}
		return d
	}
	for _, tc := range []struct {
		name   string
		d      tenant.Domain
		strict bool
		want   string
	}{
		{"leased", dom([]string{"up"}, "pa", "pb"), true, ""},
		{"another tenant's", dom(nil, "other"), true, "not leased"},
		{"another tenant's, admin", dom(nil, "other"), false, "not leased"},
		{"unlisted", dom(nil, "new"), true, "not leased"},
		{"unlisted, admin", dom(nil, "new"), false, ""},
		{"bridge", dom(nil, "br0"), false, "reserved"},
		{"LOCAL uplink", dom([]string{"LOCAL"}), false, "reserved"},
		{"uplink as a VM's port", dom(nil, "up"), true, "is an uplink"},
		{"VM's port as uplink", dom([]string{"pa"}), true, "not an uplink"},
	} {
		err := CheckDomain(tc.d, inv, host.Reserved, tc.strict)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestPublicHidesPaths(t *testing.T) {
	p := Port{Name: "vm2", Tenant: "acme", Memory: "/dev/shm/g2", QMP: "/run/secaas/q", Disk: &Disk{Image: "/srv/images/x", Mode: "front", Socket: "/run/secaas/s"}}
	pub := p.Public()
	for _, f := range pub.Paths() {
		if strings.HasPrefix(f[1], "/") {
			t.Errorf("%s shows %s", f[0], f[1])
		}
	}
}
