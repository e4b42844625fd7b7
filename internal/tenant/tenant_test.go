package tenant

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func table2(t testing.TB) *Net {
	t.Helper()
	_, n, err := LoadPolicy("../../examples/table2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ipPkt builds an IPv4 packet between two VMs of n.
func ipPkt(t testing.TB, n *Net, from, to string, proto uint8, sport, dport uint16) Packet {
	t.Helper()
	a, ok1 := n.VMByName(0, from)
	b, ok2 := n.VMByName(0, to)
	if !ok1 || !ok2 {
		t.Fatalf("unknown vm %s or %s", from, to)
	}
	return Packet{InPort: a.Port, EthSrc: a.HW, EthDst: b.HW, EthType: EthIPv4, Src: a.Addr, Dst: b.Addr,
		Proto: proto, SrcPort: sport, DstPort: dport, ICMPType: 8}
}

func TestTable2Outcomes(t *testing.T) {
	n := table2(t)
	tests := []struct {
		name     string
		pkt      Packet
		want     Action
		wantRule string
	}{
		{"ping VM1->VM2", ipPkt(t, n, "VM1", "VM2", ProtoICMP, 0, 0), Pass, "td100/subD1/acr0"},
		{"ping VM2->VM1", ipPkt(t, n, "VM2", "VM1", ProtoICMP, 0, 0), Pass, "td100/subD1/acr0"},
		{"ping VM1->VM3", ipPkt(t, n, "VM1", "VM3", ProtoICMP, 0, 0), Drop, "td100/subD1/acr1"},
		{"telnet VM1->VM3:22", ipPkt(t, n, "VM1", "VM3", ProtoTCP, 40000, 22), Pass, "td100/subD2/acr0"},
		{"reply VM3:22->VM1", ipPkt(t, n, "VM3", "VM1", ProtoTCP, 22, 40000), Pass, "td100/subD2/acr1"},
		{"VM3->VM1:22 (wrong way)", ipPkt(t, n, "VM3", "VM1", ProtoTCP, 40000, 22), Drop, "td100/subD2/acr2"},
		{"VM1->VM3 udp 22", ipPkt(t, n, "VM1", "VM3", ProtoUDP, 5000, 22), Pass, "td100/subD2/acr0"},
		{"VM2->VM3:23", ipPkt(t, n, "VM2", "VM3", ProtoTCP, 40000, 23), Drop, "td100/subD1/acr1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := n.Decide(tt.pkt)
			if v.Action != tt.want {
				t.Fatalf("got %s (%s), want %s", v.Action, v.Reason, tt.want)
			}
			var refs []string
			for _, r := range v.Rules {
				refs = append(refs, r.String())
			}
			if !strings.Contains(strings.Join(refs, " "), tt.wantRule) {
				t.Fatalf("rules %v do not include %s", refs, tt.wantRule)
			}
		})
	}
}

func TestARPStaysInDomain(t *testing.T) {
	other := Domain{TID: 200, Name: "other", Subnets: []Subnet{{Name: "s", VMs: []VM{
		{Name: "X", MAC: "02:00:00:00:00:01", IP: "192.168.1.19", Port: "x1"}}}}}
	p, _ := ParsePolicy(mustRead(t, "../../examples/table2.yaml"))
	n, err := NewNet(append(p.Domains, other))
	if err != nil {
		t.Fatal(err)
	}
	vm1, _ := n.VMByName(100, "VM1")
	bcast := MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	v := n.Decide(Packet{InPort: "vm1", EthSrc: vm1.HW, EthDst: bcast, EthType: EthARP, ARPSHA: vm1.HW, ARPSPA: vm1.Addr})
	if v.Action != Pass || strings.Join(v.Out, ",") != "vm2,vm3" {
		t.Fatalf("ARP broadcast: %+v", v)
	}
	spoof := n.Decide(Packet{InPort: "vm1", EthSrc: vm1.HW, EthDst: bcast, EthType: EthARP, ARPSHA: vm1.HW, ARPSPA: netip.MustParseAddr("192.168.1.22")})
	if spoof.Action != Drop {
		t.Fatalf("ARP spoof passed: %+v", spoof)
	}
	x, _ := n.VMByName(200, "X")
	toX := n.Decide(Packet{InPort: "vm1", EthSrc: vm1.HW, EthDst: x.HW, EthType: EthARP, ARPSHA: vm1.HW, ARPSPA: vm1.Addr})
	if toX.Action != Drop {
		t.Fatalf("ARP crossed domains: %+v", toX)
	}
}

func TestValidationErrors(t *testing.T) {
	base := func() Domain {
		return Domain{TID: 7, Name: "d", Subnets: []Subnet{{Name: "s", CIDR: "10.0.0.0/24", VMs: []VM{
			{Name: "a", MAC: "02:00:00:00:00:01", IP: "10.0.0.1", Port: "pa"},
			{Name: "b", MAC: "02:00:00:00:00:02", IP: "10.0.0.2", Port: "pb"}},
			ACRs: []ACR{{Priority: 1, SrcMAC: []string{"a"}, Action: Pass}}}}}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("base invalid: %v", err)
	}
	tests := []struct {
		name, want string
		mut        func(*Domain)
	}{
		{"tid zero", "tid must be in", func(d *Domain) { d.TID = 0 }},
		{"tid too big", "tid must be in", func(d *Domain) { d.TID = 5000 }},
		{"bad mac", "not a 48-bit MAC", func(d *Domain) { d.Subnets[0].VMs[0].MAC = "zz" }},
		{"multicast mac", "not a unicast", func(d *Domain) { d.Subnets[0].VMs[0].MAC = "01:00:5e:00:00:01" }},
		{"dup mac", "also vm", func(d *Domain) { d.Subnets[0].VMs[1].MAC = d.Subnets[0].VMs[0].MAC }},
		{"bad ip", "not an IP address", func(d *Domain) { d.Subnets[0].VMs[0].IP = "10.0.0" }},
		{"ip outside cidr", "outside the subnet", func(d *Domain) { d.Subnets[0].VMs[0].IP = "10.0.1.1" }},
		{"bad cidr", "not an IP prefix", func(d *Domain) { d.Subnets[0].CIDR = "10.0.0.0/33" }},
		{"dup ip", "also vm", func(d *Domain) { d.Subnets[0].VMs[1].IP = "10.0.0.1" }},
		{"dup port", "already in use", func(d *Domain) { d.Subnets[0].VMs[1].Port = "pa" }},
		{"long port", "not a valid port name", func(d *Domain) { d.Subnets[0].VMs[1].Port = "port-name-too-long" }},
		{"unknown vm in acr", "neither a VM", func(d *Domain) { d.Subnets[0].ACRs[0].SrcMAC = []string{"ghost"} }},
		{"priority range", "outside 0..65535", func(d *Domain) { d.Subnets[0].ACRs[0].Priority = 70000 }},
		{"negative priority", "outside 0..65535", func(d *Domain) { d.Subnets[0].ACRs[0].Priority = -1 }},
		{"bad action", "neither pass nor drop", func(d *Domain) { d.Subnets[0].ACRs[0].Action = "allow" }},
		{"bad proto", "not one of", func(d *Domain) { d.Subnets[0].ACRs[0].Proto = "sctp" }},
		{"ports on icmp", "ports need proto", func(d *Domain) {
			d.Subnets[0].ACRs[0].Proto = "icmp"
			d.Subnets[0].ACRs[0].DstPort = PortRange{22, 22}
		}},
		{"mixed families", "share no address family", func(d *Domain) {
			d.Subnets[0].ACRs[0].SrcIP = []string{"10.0.0.0/8"}
			d.Subnets[0].ACRs[0].DstIP = []string{"fd00::/8"}
		}},
		{"bad mode", "neither stateless", func(d *Domain) { d.Mode = "stately" }},
		{"bad uuid", "not a UUID", func(d *Domain) { d.Subnets[0].VMs[0].UUID = "123" }},
		{"bad nad window", "nad window", func(d *Domain) { d.Subnets[0].VMs[0].NAD = &NADPolicy{Window: "1ms"} }},
		{"bad nad history", "nad history", func(d *Domain) { d.Subnets[0].VMs[0].NAD = &NADPolicy{History: 3} }},
		{"bad nad detector", "nad detector", func(d *Domain) { d.Subnets[0].VMs[0].NAD = &NADPolicy{Detector: "LSTM!"} }},
		{"nad model path", "nad model", func(d *Domain) { d.Subnets[0].VMs[0].NAD = &NADPolicy{Detector: "lstm", Model: "../../etc/shadow"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base()
			tt.mut(&d)
			err := d.Validate()
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	// Constraint (a) across domains.
	if _, err := NewNet([]Domain{base(), func() Domain { d := base(); d.Name = "e"; d.Subnets[0].VMs = nil; return d }()}); err == nil || !strings.Contains(err.Error(), "constraint a") {
		t.Fatalf("duplicate TID accepted: %v", err)
	}
}

func TestPortRange(t *testing.T) {
	for in, want := range map[string]PortRange{"22": {22, 22}, "1000-2000": {1000, 2000}, "": {}, "*": {}} {
		got, err := ParsePortRange(in)
		if err != nil || got != want {
			t.Errorf("%q: got %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "65536", "5-4", "a", "1-b"} {
		if _, err := ParsePortRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRuleOrder(t *testing.T) {
	// Equal priority: drop is evaluated before pass.
	d := Domain{TID: 1, Name: "d", Subnets: []Subnet{{Name: "s", VMs: []VM{
		{Name: "a", MAC: "02:00:00:00:00:01", IP: "10.0.0.1", Port: "pa"},
		{Name: "b", MAC: "02:00:00:00:00:02", IP: "10.0.0.2", Port: "pb"}},
		ACRs: []ACR{{Priority: 5, Action: Pass}, {Priority: 5, Action: Drop, Proto: "udp"}}}}}
	n, err := NewNet([]Domain{d})
	if err != nil {
		t.Fatal(err)
	}
	if v := n.Decide(ipPkt(t, n, "a", "b", ProtoUDP, 1, 2)); v.Action != Drop {
		t.Fatalf("udp: %+v", v)
	}
	if v := n.Decide(ipPkt(t, n, "a", "b", ProtoTCP, 1, 2)); v.Action != Pass {
		t.Fatalf("tcp: %+v", v)
	}
}

func mustRead(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParsePolicy(f *testing.F) {
	f.Add(mustRead(f, "../../examples/table2.yaml"))
	f.Add([]byte(`{"domains":[{"tid":1,"name":"x","subnets":[{"name":"s","acrs":[{"priority":1,"dstport":"1-9","action":"pass"}]}]}]}`))
	f.Add([]byte("domains: [{tid: 1, name: a, subnets: [{name: s, vms: [{name: v, mac: 'zz', ip: x, port: p}]}]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePolicy(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parse error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		n, err := NewNet(p.Domains)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("validation error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		// A valid net must answer every question without panicking.
		for _, d := range n.Domains {
			for _, a := range d.VMs {
				for _, b := range d.VMs {
					n.Decide(Packet{InPort: a.Port, EthSrc: a.HW, EthDst: b.HW, EthType: EthIPv4, Src: a.Addr, Dst: b.Addr, Proto: ProtoTCP, DstPort: 22})
				}
			}
		}
	})
}

func TestStrictJSON(t *testing.T) {
	type acr struct {
		Action string `json:"action"`
		Src    []any  `json:"src"`
		Sub    *struct {
			A int `json:"a"`
		} `json:"sub"`
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"action":"drop"}`, true},
		{`{"action":"drop","src":[{"a":1},{"a":1}],"sub":{"a":1}}`, true},
		{`{"action":"drop","action":"pass"}`, false},
		{`{"sub":{"a":1,"a":2}}`, false},
		{`{"src":[{"x":1,"x":2}]}`, false},
		{`{"action":"drop"} {}`, false},
		{`{"action":"drop"`, false},
		{`{"bogus":1}`, false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), false},
	} {
		var v acr
		if err := DecodeStrictJSON([]byte(tc.in), &v); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.in, err)
		}
	}
	if _, err := ParsePolicy([]byte(`{"domains":[{"tid":1,"tid":2}]}`)); err == nil {
		t.Error("a policy file with a duplicate key")
	}
	if _, err := ParsePolicy([]byte("domains:\n  - tid: 1\n    tid: 2\n")); err == nil {
		t.Error("a YAML policy with a duplicate key")
	}
}

func FuzzStrictJSON(f *testing.F) {
	f.Add([]byte(`{"domains":[{"tid":1,"subnets":[{"name":"a","acrs":[{"action":"drop"}]}]}]}`))
	f.Add([]byte(`{"a":{"b":[1,{"c":2,"c":3}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Policy
		err := DecodeStrictJSON(b, &p)
		if err == nil && CheckJSONKeys(b) != nil {
			t.Fatal("decoded a document with duplicate keys")
		}
	})
}

func TestAmbiguousNames(t *testing.T) {
	for name, want := range map[string]string{
		"10.9.0.12": "an IP address", "fe80::1": "an IP address", "10.9.0.0/24": "an IP prefix",
		"fa-16-3e-b0-ef-aa": "a MAC address", "0123.4567.89ab": "a MAC address", "any": "a wildcard", "ANY": "a wildcard",
		"VM1": "", "web-10": "", "10.9.0.12a": "", "db.internal": "",
	} {
		if got := AmbiguousName(name); got != want {
			t.Errorf("%q: %q, want %q", name, got, want)
		}
	}
}

// TestRenameAmbiguous: a VM named like another host's address took
// precedence over that address in rules; such a policy is refused now.
// After the rename, the drop rule written for the address drops the host
// at that address; a MAC field that could only have meant the VM follows
// the rename; "any" stays the wildcard.
func TestRenameAmbiguous(t *testing.T) {
	d := Domain{TID: 9, Name: "d", Subnets: []Subnet{{Name: "s", CIDR: "10.9.0.0/24", VMs: []VM{
		{Name: "client", MAC: "02:00:00:00:09:01", IP: "10.9.0.2", Port: "p1"},
		{Name: "10.9.0.12", MAC: "02:00:00:00:09:05", IP: "10.9.0.5", Port: "p2"},
		{Name: "real", MAC: "02:00:00:00:09:12", IP: "10.9.0.12", Port: "p3"},
		{Name: "any", MAC: "02:00:00:00:09:13", IP: "10.9.0.13", Port: "p4"}},
		ACRs: []ACR{{Priority: 10, DstIP: []string{"10.9.0.12"}, Action: Drop},
			{Priority: 10, DstMAC: []string{"10.9.0.12"}, Proto: "udp", Action: Drop},
			{Priority: 5, SrcMAC: []string{"any"}, Action: Pass}}}}}
	if _, err := NewNet([]Domain{d}); err == nil || !strings.Contains(err.Error(), "may not read as an IP address") || !strings.Contains(err.Error(), "a wildcard") {
		t.Fatalf("ambiguous names accepted: %v", err)
	}
	changes := RenameAmbiguous(&d)
	if len(changes) != 3 || d.Subnets[0].ACRs[0].DstIP[0] != "10.9.0.12" || d.Subnets[0].ACRs[1].DstMAC[0] != "vm-10.9.0.12" {
		t.Fatalf("changes %v, acrs %+v", changes, d.Subnets[0].ACRs)
	}
	n, err := NewNet([]Domain{d})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := n.VMByName(9, "client")
	for _, tc := range []struct {
		to    string
		proto uint8
		want  Action
	}{{"vm-10.9.0.12", ProtoTCP, Pass}, {"vm-10.9.0.12", ProtoUDP, Drop}, {"real", ProtoTCP, Drop}, {"vm-any", ProtoTCP, Pass}} {
		vm, ok := n.VMByName(9, tc.to)
		if !ok {
			t.Fatalf("no vm %s", tc.to)
		}
		p := Packet{InPort: from.Port, EthSrc: from.HW, EthDst: vm.HW, Src: from.Addr, Dst: vm.Addr, EthType: EthIPv4, Proto: tc.proto, SrcPort: 40000, DstPort: 22}
		if v := n.Decide(p); v.Action != tc.want {
			t.Errorf("client -> %s (%d): %s, want %s", tc.to, tc.proto, v.Action, tc.want)
		}
	}
}

func TestStricterAddressing(t *testing.T) {
	mk := func(cidr, ip string) Domain {
		return Domain{TID: 3, Name: "d", Subnets: []Subnet{{Name: "s", CIDR: cidr, VMs: []VM{{Name: "a", MAC: "02:00:00:00:00:01", IP: ip, Port: "p1"}}}}}
	}
	if _, err := NewNet([]Domain{mk("10.0.0.1/24", "10.0.0.2")}); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("a cidr with host bits: %v", err)
	}
	for _, tc := range []struct {
		cidr, ip string
		ok       bool
	}{
		{"10.0.0.0/24", "10.0.0.2", true}, {"10.0.0.0/24", "10.0.0.0", false}, {"10.0.0.0/24", "10.0.0.255", false},
		{"10.0.0.0/31", "10.0.0.0", true}, {"10.0.0.0/31", "10.0.0.1", true}, {"10.0.0.4/30", "10.0.0.7", false},
		{"fd00::/64", "fd00::", false}, {"fd00::/64", "fd00::ffff:ffff:ffff:ffff", true},
	} {
		if err := CheckAddressing(mk(tc.cidr, tc.ip)); (err == nil) != tc.ok {
			t.Errorf("%s in %s: %v", tc.ip, tc.cidr, err)
		}
	}
}

// TestSortRulesIsBefore: the integer key sorts rules exactly as Before.
func TestSortRulesIsBefore(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 200; n++ {
		var rules []*Rule
		for i := 0; i < 50; i++ {
			a := Pass
			if r.IntN(2) == 0 {
				a = Drop
			}
			rules = append(rules, &Rule{Priority: []int{0, 1, 7, MaxPriority}[r.IntN(4)], Action: a, Seq: r.IntN(1 << 20)})
		}
		got := sortRules(slices.Clone(rules))
		for i := 1; i < len(got); i++ {
			if got[i].Before(got[i-1]) {
				t.Fatalf("rule %d (%+v) sorted after %+v", i, got[i], got[i-1])
			}
		}
	}
}
