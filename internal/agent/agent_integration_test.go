package agent_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/agent"
	"secaas/internal/capture"
	"secaas/internal/detect"
	"secaas/internal/feature"
	"secaas/internal/hostpath"
	"secaas/internal/inventory"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/lstm"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
	"secaas/internal/tenant/tenanttest"

	"golang.org/x/sys/unix"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loadTable2 loads Table 2 with ports agvm1..3 (see labtest.Table2).
func loadTable2(t *testing.T) []tenant.Domain {
	p, err := tenant.ParsePolicy(mustRead(t, labtest.Table2(t, "../..", "agvm")))
	if err != nil {
		t.Fatal(err)
	}
	return p.Domains
}

// TestTable2OnRealOVS is the paper's experiment on a real bridge with real
// namespaces: ping VM1->VM2 passes, ping VM1->VM3 is dropped, TCP to a real
// listener on VM3:22 connects.
func TestTable2OnRealOVS(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sct2")
	domains := loadTable2(t)
	n, err := tenant.NewNet(domains)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := lab.HostsFor(ctx, br, n, "sct2-", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.RemoveAll(context.Background(), br, hosts) })
	var events []agent.Event
	a := agent.New(br, quiet(), func(e agent.Event) { events = append(events, e) })
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// fail_mode=secure with no policy: nothing passes.
	vm1, vm2, vm3 := hosts["agvm1"], hosts["agvm2"], hosts["agvm3"]
	if vm1.Ping(ctx, vm2.IP.Addr(), 1, time.Second) {
		t.Fatal("ping VM1->VM2 passed before any policy")
	}
	if err := a.Apply(ctx, domains, nil); err != nil {
		t.Fatal(err)
	}
	if !vm1.Ping(ctx, vm2.IP.Addr(), 3, 2*time.Second) {
		t.Fatal("ping VM1->VM2 dropped; Table 2 says it passes")
	}
	if vm1.Ping(ctx, vm3.IP.Addr(), 2, time.Second) {
		t.Fatal("ping VM1->VM3 passed; Table 2 says it is dropped")
	}
	l, err := vm3.ListenTCP(22)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-lab\r\n"))
			c.Close()
		}
	}()
	c, err := vm1.DialTCP(netip.AddrPortFrom(vm3.IP.Addr(), 22), 3*time.Second)
	if err != nil {
		t.Fatalf("telnet VM1->VM3:22: %v", err)
	}
	banner, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(banner), "SSH-2.0-lab") {
		t.Fatalf("banner %q", banner)
	}
	// VM3 cannot open connections to VM1 (no rule for that direction).
	l1, err := vm1.ListenTCP(2222)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	if c, err := vm3.DialTCP(netip.AddrPortFrom(vm1.IP.Addr(), 2222), time.Second); err == nil {
		c.Close()
		t.Fatal("VM3->VM1:2222 connected; no rule allows it")
	}

	// Incremental updates: a changed policy goes out as a difference and
	// leaves the switch exactly at the desired set; so does changing back.
	changed := loadTable2(t)
	changed[0].Subnets[1].ACRs = append(changed[0].Subnets[1].ACRs, tenant.ACR{Priority: 9, SrcMAC: []string{"VM3"}, Proto: "udp", Action: tenant.Pass})
	for _, ds := range [][]tenant.Domain{changed, domains} {
		if err := a.Apply(ctx, ds, nil); err != nil {
			t.Fatal(err)
		}
		if diff, err := br.Diff(ctx, a.Flows()); err != nil || diff != "" {
			t.Fatalf("after an incremental apply the switch differs: %v\n%s", err, diff)
		}
	}
	if repaired, err := a.Reconcile(ctx); err != nil || repaired {
		t.Fatalf("reconcile right after apply: repaired=%v err=%v", repaired, err)
	}

	// Drift: delete the output table by hand; one reconcile pass restores it.
	if err := br.DelFlows(ctx, "table=45"); err != nil {
		t.Fatal(err)
	}
	if vm1.Ping(ctx, vm2.IP.Addr(), 1, time.Second) {
		t.Fatal("ping passed with the output table deleted")
	}
	repaired, err := a.Reconcile(ctx)
	if err != nil || !repaired {
		t.Fatalf("reconcile: repaired=%v err=%v", repaired, err)
	}
	if !vm1.Ping(ctx, vm2.IP.Addr(), 3, 2*time.Second) {
		t.Fatal("ping VM1->VM2 still dropped after the repair")
	}
	if repaired, err := a.Reconcile(ctx); err != nil || repaired {
		t.Fatalf("second reconcile changed the switch: %v %v", repaired, err)
	}
	if !slices.ContainsFunc(events, func(e agent.Event) bool { return e.Kind == "flows.drift_repaired" }) {
		t.Fatalf("no drift event in %+v", events)
	}
	// In-place drift: a drop flow turned into a pass keeps the flow count;
	// the next pass finds and repairs it all the same.
	for _, kind := range []string{"modify", "add"} {
		args := map[string][]string{"modify": {"mod-flows", "--strict"}, "add": {"add-flow"}}[kind]
		spec := tamper(t, a.Flows(), kind)
		if out, err := exec.Command("ovs-ofctl", append(append([]string{"-O", "OpenFlow14"}, args...), br.Name, spec)...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v %s", kind, spec, err, out)
		}
		if diff, _ := br.Diff(ctx, a.Flows()); diff == "" {
			t.Fatalf("%s: the tampering did not change the switch", kind)
		}
		repaired, err := a.Reconcile(ctx)
		if err != nil || !repaired {
			t.Fatalf("%s drift: repaired=%v err=%v", kind, repaired, err)
		}
		if diff, err := br.Diff(ctx, a.Flows()); err != nil || diff != "" {
			t.Fatalf("%s drift left a difference: %v %s", kind, err, diff)
		}
	}

	// A policy that fails to validate changes nothing on the switch.
	before, _ := br.DumpFlows(ctx)
	bad := loadTable2(t)
	bad[0].Subnets[0].VMs[0].MAC = "not-a-mac"
	if err := a.Apply(ctx, bad, nil); err == nil {
		t.Fatal("invalid policy applied")
	}
	if after, _ := br.DumpFlows(ctx); after != before {
		t.Fatal("a rejected policy changed the flows")
	}
}

// TestTwoTenantsSameAddressing: two domains with identical 10.0.0.0/24
// addressing on one bridge; each reaches its own peers, never the other's.
func TestTwoTenantsSameAddressing(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sctt")
	mk := func(tid int, name, pfx string, mode tenant.Mode) tenant.Domain {
		return tenant.Domain{TID: tid, Name: name, Mode: mode, Subnets: []tenant.Subnet{{Name: "net", CIDR: "10.0.0.0/24",
			VMs: []tenant.VM{
				{Name: "a", MAC: "02:00:00:00:00:0a", IP: "10.0.0.1", Port: pfx + "a"},
				{Name: "b", MAC: "02:00:00:00:00:0b", IP: "10.0.0.2", Port: pfx + "b"}},
			ACRs: []tenant.ACR{{Priority: 10, Action: tenant.Pass}}}}}
	}
	domains := []tenant.Domain{mk(11, "red", "red", tenant.Stateless), mk(12, "blue", "blue", tenant.Stateful)}
	hosts, a := enforce(t, br, domains, "sctt-", nil)
	for _, pfx := range []string{"red", "blue"} {
		if !hosts[pfx+"a"].Ping(ctx, netip.MustParseAddr("10.0.0.2"), 3, 2*time.Second) {
			t.Fatalf("%s a->b dropped", pfx)
		}
	}
	// Who answered? Each b listens and names itself; a's connection must
	// reach its own tenant's b.
	for _, pfx := range []string{"red", "blue"} {
		l, err := hosts[pfx+"b"].ListenTCP(7000)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func(name string) {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name))
				c.Close()
			}
		}(pfx)
	}
	for _, pfx := range []string{"red", "blue"} {
		c, err := hosts[pfx+"a"].DialTCP(netip.MustParseAddrPort("10.0.0.2:7000"), 3*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", pfx, err)
		}
		got, _ := io.ReadAll(c)
		c.Close()
		if string(got) != pfx {
			t.Fatalf("tenant %s's connection reached %q", pfx, got)
		}
	}
	// Nothing of red's ever shows on blue's ports: watch blue b while red
	// pings, and with the same addresses a leak would be answered.
	// Detach blue b: blue a's packets to 10.0.0.2 (and b's MAC, which red
	// b shares) must now go nowhere rather than to red b.
	if err := br.DelPort(ctx, "blueb"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	hosts["bluea"].Exec(ctx, "ip", "neigh", "flush", "all")
	if hosts["bluea"].Ping(ctx, netip.MustParseAddr("10.0.0.2"), 2, time.Second) {
		t.Fatal("blue a reached 10.0.0.2 with blue b detached: the packet crossed to red")
	}
}

// TestDifferentialOracleTraceReal: on random nets, the oracle, ofproto/trace
// of the compiled flows and real packets between namespaces agree.
func TestDifferentialOracleTraceReal(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 11))
	traced, real := 0, 0
	outcomes := map[string]int{}
	for round := 0; round < 3; round++ {
		br := labtest.Bridge(t, "sctd")
		domains := tenanttest.Net(r, tenanttest.Options{Domains: 2, MaxSubnets: 2, MaxVMs: 2, MaxRules: 4, AllowStateful: true, PortPrefix: "dq"})
		n, err := tenant.NewNet(domains)
		if err != nil {
			t.Fatal(err)
		}
		hosts, err := lab.HostsFor(ctx, br, n, "sctd-", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.New(br, quiet(), nil)
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Apply(ctx, domains, nil); err != nil {
			t.Fatal(err)
		}
		// ofproto/trace against the oracle, on the generator's packets.
		for k := 0; k < 60; k++ {
			p := tenanttest.Packet(r, n)
			if p.InPort == tenanttest.UplinkPort {
				continue
			}
			want := n.Decide(p)
			got, err := a.Trace(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			traced++
			outcomes["trace "+string(want.Action)]++
			if got.Action != want.Action || !sameSet(got.Out, want.Out, p.InPort) {
				t.Fatalf("round %d packet %+v\noracle: %s %v (%s)\ntrace:  %s %v\n%s", round, p, want.Action, want.Out, want.Reason, got.Action, got.Out, got.Raw)
			}
		}
		// Real UDP datagrams between every ordered pair of VMs of a domain.
		for _, d := range n.Domains {
			for _, src := range d.VMs {
				for _, dst := range d.VMs {
					if src == dst || src.Addr.Is4() != dst.Addr.Is4() {
						continue
					}
					sport, dport := tenanttest.Ports[r.IntN(len(tenanttest.Ports))], tenanttest.Ports[r.IntN(len(tenanttest.Ports))]
					p := tenant.Packet{InPort: src.Port, EthSrc: src.HW, EthDst: dst.HW, EthType: tenant.EthIPv4,
						Src: src.Addr, Dst: dst.Addr, Proto: tenant.ProtoUDP, SrcPort: sport, DstPort: dport}
					if src.Addr.Is6() {
						p.EthType = tenant.EthIPv6
						outcomes["real IPv6"]++
					}
					want := n.Decide(p).Action == tenant.Pass
					got, err := udpDelivered(hosts[src.Port], hosts[dst.Port], sport, dport, want)
					if err != nil {
						t.Fatal(err)
					}
					real++
					outcomes[fmt.Sprint("real ", want)]++
					if got != want {
						tr, _ := a.Trace(ctx, p)
						t.Fatalf("round %d: real UDP %s:%d -> %s:%d delivered=%v, oracle says %v\n%s", round, src.Name, sport, dst.Name, dport, got, want, tr.Raw)
					}
				}
			}
		}
		lab.RemoveAll(ctx, br, hosts)
		br.Delete(ctx)
	}
	t.Logf("agreement on %d traced and %d real packets: %v", traced, real, outcomes)
	for _, k := range []string{"trace pass", "trace drop", "real true", "real false"} {
		if outcomes[k] == 0 {
			t.Fatalf("sample has no %q case: %v", k, outcomes)
		}
	}
}

func sameSet(got, want []string, in string) bool {
	w := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == in })
	g := slices.Clone(got)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}

// udpDelivered sends one datagram (retrying while ARP settles when it is
// expected to pass) and reports whether it arrived.
func udpDelivered(src, dst *lab.Host, sport, dport uint16, expect bool) (bool, error) {
	return udpProbe(src, dst, netip.AddrPortFrom(src.IP.Addr(), sport), dport, expect)
}

// udpProbe sends "probe" datagrams from `from` (an address of snd's
// namespace) to rcv's address and port dport, retrying while neighbour
// resolution settles when it is expected to pass, and reports whether one
// arrived from that source.
func udpProbe(snd, rcv *lab.Host, from netip.AddrPort, dport uint16, expect bool) (bool, error) {
	rc, err := rcv.ListenUDP(int(dport))
	if err != nil {
		return false, err
	}
	defer rc.Close()
	var sc *net.UDPConn
	err = snd.Do(func() (err error) {
		sc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(from))
		return err
	})
	if err != nil {
		return false, err
	}
	defer sc.Close()
	tries := 1
	if expect {
		tries = 5
	}
	buf := make([]byte, 64)
	for i := 0; i < tries; i++ {
		if _, err := sc.WriteToUDPAddrPort([]byte("probe"), netip.AddrPortFrom(rcv.IP.Addr(), dport)); err != nil {
			return false, err
		}
		rc.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		if n, at, err := rc.ReadFromUDPAddrPort(buf); err == nil && string(buf[:n]) == "probe" && at.Addr() == from.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// TestIPv6NeighbourDiscoveryStaysInDomain: IPv6 VMs find each other with
// real neighbour discovery through the ND flows, while a VM of another
// domain with the same address never answers (its ND never arrives). Inside
// the domain, IPv6 anti-spoofing holds: a datagram from an address the VM
// does not own is dropped, and a forged neighbour advertisement claiming
// another VM's address never reaches (or poisons) the third VM.
func TestIPv6NeighbourDiscoveryStaysInDomain(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sct6")
	mk := func(tid int, name string, vms ...tenant.VM) tenant.Domain {
		return tenant.Domain{TID: tid, Name: name, Subnets: []tenant.Subnet{{Name: "net", VMs: vms,
			ACRs: []tenant.ACR{{Priority: 1, Proto: "icmp6", Action: tenant.Pass}, {Priority: 1, Proto: "udp", Action: tenant.Pass}}}}}
	}
	domains := []tenant.Domain{
		mk(21, "six", tenant.VM{Name: "a", MAC: "02:00:00:00:06:0a", IP: "fd00::1", Port: "sixa"},
			tenant.VM{Name: "b", MAC: "02:00:00:00:06:0b", IP: "fd00::2", Port: "sixb"},
			tenant.VM{Name: "d", MAC: "02:00:00:00:06:0d", IP: "fd00::4", Port: "sixd"}),
		mk(22, "other", tenant.VM{Name: "c", MAC: "02:00:00:00:06:0c", IP: "fd00::3", Port: "othc"}),
	}
	hosts, _ := enforce(t, br, domains, "sct6-", nil)
	a, b, d := hosts["sixa"], hosts["sixb"], hosts["sixd"]
	bAddr := netip.MustParseAddr("fd00::2")
	if !a.Ping(ctx, bAddr, 3, 2*time.Second) {
		t.Fatal("ping6 a->b inside the domain failed: ND does not work")
	}
	if a.Ping(ctx, netip.MustParseAddr("fd00::3"), 2, time.Second) {
		t.Fatal("ping6 reached a VM of another domain")
	}
	out, _ := a.Exec(ctx, "ip", "-6", "neigh", "show", "fd00::3")
	if strings.Contains(string(out), "lladdr") {
		t.Fatalf("ND crossed domains: %s", out)
	}

	// Source anti-spoofing: a's own address passes, an address it gave
	// itself does not.
	if _, err := a.Exec(ctx, "ip", "-6", "addr", "add", "fd00::9/64", "dev", "eth0", "nodad"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src  string
		pass bool
	}{{"fd00::1", true}, {"fd00::9", false}} {
		if got, err := udpProbe(a, b, netip.AddrPortFrom(netip.MustParseAddr(c.src), 6005), 6006, c.pass); err != nil || got != c.pass {
			t.Fatalf("UDP a(%s)->b delivered=%v (err %v), want %v", c.src, got, err, c.pass)
		}
	}

	// ND anti-spoofing: d knows b; a forged advertisement of b's address
	// with a's MAC (override set) must not change d's entry.
	if !d.Ping(ctx, bAddr, 2, 2*time.Second) {
		t.Fatal("ping6 d->b failed")
	}
	if err := a.Do(func() error { return sendNA(a.MAC, bAddr) }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	out, _ = d.Exec(ctx, "ip", "-6", "neigh", "show", "fd00::2")
	if !strings.Contains(string(out), b.MAC.String()) {
		t.Fatalf("d's neighbour entry for b was poisoned by a forged advertisement: %q (b is %s, a is %s)", out, b.MAC, a.MAC)
	}
}

// sendNA writes one unsolicited neighbour advertisement (override set) for
// target with link-layer address mac to all nodes, out of eth0 of the
// calling thread's namespace, with a raw AF_PACKET socket.
func sendNA(mac tenant.MAC, target netip.Addr) error {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	src, dst := netip.MustParseAddr("fe80::a"), netip.MustParseAddr("ff02::1")
	icmp := make([]byte, 32)
	icmp[0] = 136        // neighbour advertisement
	icmp[4] = 0x20       // override
	t16 := target.As16() // target address
	copy(icmp[8:24], t16[:])
	icmp[24], icmp[25] = 2, 1 // option: target link-layer address, 8 bytes
	copy(icmp[26:32], mac[:])
	var sum uint32
	s16, d16 := src.As16(), dst.As16()
	pseudo := append(append(append([]byte{}, s16[:]...), d16[:]...), 0, 0, 0, byte(len(icmp)), 0, 0, 0, 58)
	for _, part := range [][]byte{pseudo, icmp} {
		for i := 0; i < len(part); i += 2 {
			sum += uint32(part[i])<<8 | uint32(part[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(icmp[2:], ^uint16(sum))
	frame := []byte{0x33, 0x33, 0, 0, 0, 1}
	frame = append(frame, mac[:]...)
	frame = append(frame, 0x86, 0xdd)
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:], uint16(len(icmp)))
	ip6[6], ip6[7] = 58, 255 // ICMPv6, hop limit 255 (ND requires it)
	copy(ip6[8:24], s16[:])
	copy(ip6[24:40], d16[:])
	frame = append(append(frame, ip6...), icmp...)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0x33, 0x33, 0, 0, 0, 1}})
}

// TestNADMonitorAlertsOnRealFlood: a VM with anomaly detection on; its port
// is mirrored and captured live. Quiet pings build the profile, then a real
// hping3 SYN flood from the other VM raises a nad.alert event naming the VM.
func TestNADMonitorAlertsOnRealFlood(t *testing.T) {
	labtest.RequireOVS(t)
	if _, err := exec.LookPath("hping3"); err != nil {
		labtest.Missing(t, "hping3 not installed")
	}
	ctx := context.Background()
	br := labtest.Bridge(t, "sctn")
	domains := []tenant.Domain{{TID: 31, Name: "nad", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "web", MAC: "02:00:00:00:31:01", IP: "10.31.0.1", Port: "nadweb", NAD: &tenant.NADPolicy{Window: "500ms", History: 12}},
		{Name: "cli", MAC: "02:00:00:00:31:02", IP: "10.31.0.2", Port: "nadcli"}},
		ACRs: []tenant.ACR{{Priority: 1, Action: tenant.Pass}}}}}}
	var mu sync.Mutex
	var events []agent.Event
	hosts, a := enforce(t, br, domains, "sctn-", func(e agent.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	alerts := func() []agent.Event {
		mu.Lock()
		defer mu.Unlock()
		var out []agent.Event
		for _, e := range events {
			if e.Kind == "nad.alert" {
				out = append(out, e)
			}
		}
		return out
	}
	// Quiet, regular traffic for the profile (12 windows of 0.5 s).
	web := netip.MustParseAddr("10.31.0.1")
	stopPings := pingLoop(ctx, hosts["nadcli"], web)
	time.Sleep(9 * time.Second)
	if got := alerts(); len(got) > 1 {
		t.Fatalf("%d alerts on quiet traffic: %+v", len(got), got)
	}
	before := len(alerts())
	if out, err := hosts["nadcli"].Exec(ctx, "hping3", "-q", "-S", "-p", "80", "-c", "3000", "-i", "u300", "10.31.0.1"); err != nil && len(out) == 0 {
		t.Logf("hping3: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(alerts()) == before && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stopPings()
	got := alerts()
	if len(got) == before {
		mu.Lock()
		t.Fatalf("no nad.alert after a SYN flood; events: %+v", events)
	}
	e := got[len(got)-1]
	var al agent.Alert
	if err := json.Unmarshal([]byte(e.Detail), &al); err != nil || e.Tenant != "acme" || e.Subject != "vm/web" || al.IP != "10.31.0.1" || len(al.Top) == 0 {
		t.Fatalf("alert %+v / %+v (%v)", e, al, err)
	}
	t.Logf("alert: deviation %.3g > threshold %.3g, top %s, %d packets in the window", al.Deviation, al.Threshold, al.Top[0].Feature, al.Packets)
	// Disabling detection removes the mirror and its port.
	domains[0].Subnets[0].VMs[0].NAD = nil
	if err := a.Apply(ctx, domains, nil); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ovs-vsctl", "--bare", "--columns=name", "list", "mirror").Output(); strings.Contains(string(out), "secaas-nad-nadweb") {
		t.Fatalf("mirror still there: %s", out)
	}
}

// enforce makes one namespace per VM of domains on br (named prefix+port),
// starts an agent on br and applies domains; everything is undone when the
// test ends.
func enforce(t *testing.T, br *ovs.Bridge, domains []tenant.Domain, prefix string, onEvent func(agent.Event)) (map[string]*lab.Host, *agent.Agent) {
	t.Helper()
	return enforceWith(t, br, domains, prefix, onEvent, nil, nil)
}

// enforceWith is enforce with host roots and an inventory for the VMs'
// host resources.
func enforceWith(t *testing.T, br *ovs.Bridge, domains []tenant.Domain, prefix string, onEvent func(agent.Event), host hostpath.Host, inv inventory.Ports) (map[string]*lab.Host, *agent.Agent) {
	t.Helper()
	ctx := context.Background()
	n, err := tenant.NewNet(domains)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := lab.HostsFor(ctx, br, n, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.RemoveAll(context.Background(), br, hosts) })
	a := agent.New(br, quiet(), onEvent)
	a.Host = host
	t.Cleanup(a.Close)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, domains, inv); err != nil {
		t.Fatal(err)
	}
	return hosts, a
}

// TestNamesNeverChangeAddresses: on the real switch, a drop rule written
// for an address drops that address. A VM named like the address (which
// used to take precedence, so the rule missed the host at the address) is
// refused; in the migrated policy (the VM renamed) the rule drops the host
// at the address and not the renamed VM, as the oracle says, and "any"
// stays the wildcard.
func TestNamesNeverChangeAddresses(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sctn")
	d := tenant.Domain{TID: 21, Name: "names", Subnets: []tenant.Subnet{{Name: "s", CIDR: "10.21.0.0/24", VMs: []tenant.VM{
		{Name: "client", MAC: "02:00:00:00:21:02", IP: "10.21.0.2", Port: "snclient"},
		{Name: "10.21.0.12", MAC: "02:00:00:00:21:05", IP: "10.21.0.5", Port: "snlook"},
		{Name: "real", MAC: "02:00:00:00:21:12", IP: "10.21.0.12", Port: "snreal"}},
		ACRs: []tenant.ACR{{Priority: 10, DstIP: []string{"10.21.0.12"}, Action: tenant.Drop},
			{Priority: 10, SrcIP: []string{"10.21.0.12"}, Action: tenant.Drop},
			{Priority: 5, SrcMAC: []string{"any"}, Action: tenant.Pass}}}}}
	a := agent.New(br, quiet(), nil)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, []tenant.Domain{d}, nil); err == nil || !strings.Contains(err.Error(), "may not read as an IP address") {
		t.Fatalf("a VM named like an address: %v", err)
	}
	a.Close()
	if changes := tenant.RenameAmbiguous(&d); len(changes) != 3 {
		t.Fatalf("changes %v", changes)
	}
	hosts, _ := enforce(t, br, []tenant.Domain{d}, "sctn-", nil)
	n, err := tenant.NewNet([]tenant.Domain{d})
	if err != nil {
		t.Fatal(err)
	}
	client := hosts["snclient"]
	for _, tc := range []struct {
		port string
		ip   string
		want bool
	}{{"snlook", "10.21.0.5", true}, {"snreal", "10.21.0.12", false}} {
		got := client.Ping(ctx, netip.MustParseAddr(tc.ip), 2, time.Second)
		from, _ := n.VMByName(21, "client")
		to, _ := n.VMByPort(tc.port)
		v := n.Decide(tenant.Packet{InPort: from.Port, EthSrc: from.HW, EthDst: to.HW, Src: from.Addr, Dst: to.Addr, EthType: tenant.EthIPv4, Proto: tenant.ProtoICMP, ICMPType: 8})
		if got != tc.want || (v.Action == tenant.Pass) != tc.want {
			t.Errorf("client -> %s (%s): switch %v, oracle %s, want pass=%v", to.Name, tc.ip, got, v.Action, tc.want)
		}
	}
}

// tamper returns an ovs-ofctl flow spec that changes the switch without
// changing its flow count (kind "modify": a drop flow's actions become
// NORMAL, i.e. pass) or adds a pass flow above everything ("add").
func tamper(t *testing.T, flows, kind string) string {
	t.Helper()
	if kind == "add" {
		return "table=0,priority=65000,ip,actions=NORMAL"
	}
	for _, l := range strings.Split(flows, "\n") {
		if match, ok := strings.CutSuffix(strings.TrimSpace(l), " actions=drop"); ok && strings.Contains(match, "dl_type=0x0800") {
			return strings.ReplaceAll(match, " ", "") + ",actions=NORMAL"
		}
	}
	t.Fatal("no IPv4 drop flow to tamper with")
	return ""
}

// TestRestartDropsNothing: a 10 ms ping across the switch while the agent
// is restarted three times (a new agent starts and applies the same
// desired state, as secaasd does on start) loses no packet.
func TestRestartDropsNothing(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "sctrs")
	d := tenant.Domain{TID: 31, Name: "restart", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "a", MAC: "02:00:00:00:31:01", IP: "10.31.0.1", Port: "srsa"},
		{Name: "b", MAC: "02:00:00:00:31:02", IP: "10.31.0.2", Port: "srsb"}},
		ACRs: []tenant.ACR{{Priority: 10, Proto: "icmp", Action: tenant.Pass}}}}}
	hosts, a := enforce(t, br, []tenant.Domain{d}, "sctrs-", nil)
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := hosts["srsa"].Exec(ctx, "ping", "-n", "-q", "-i", "0.01", "-c", "400", "-W", "1", "10.31.0.2")
		done <- result{out, err}
	}()
	time.Sleep(500 * time.Millisecond)
	a.Close()
	for i := 0; i < 3; i++ {
		b := agent.New(br, quiet(), nil)
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Apply(ctx, []tenant.Domain{d}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		b.Close()
		time.Sleep(800 * time.Millisecond)
	}
	r := <-done
	if !strings.Contains(string(r.out), "400 packets transmitted, 400 received") {
		t.Fatalf("packets lost across restarts: %v\n%s", r.err, r.out)
	}
}

// TestRunRepairsAtOnce: with the reconcile loop running at a long
// interval, a drop flow turned into a pass in place is repaired well
// before the interval: the switch's flow monitor reports the change.
func TestRunRepairsAtOnce(t *testing.T) {
	labtest.RequireOVS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	br := labtest.Bridge(t, "sctra")
	_, a := enforce(t, br, loadTable2(t), "sctra-", nil)
	done := make(chan struct{})
	go func() { a.Run(ctx, time.Minute); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond) // the monitor connects
	for _, kind := range []string{"modify", "add"} {
		args := map[string][]string{"modify": {"mod-flows", "--strict"}, "add": {"add-flow"}}[kind]
		spec := tamper(t, a.Flows(), kind)
		t0 := time.Now()
		if out, err := exec.Command("ovs-ofctl", append(append([]string{"-O", "OpenFlow14"}, args...), br.Name, spec)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", kind, err, out)
		}
		for {
			diff, err := br.Diff(ctx, a.Flows())
			if err == nil && diff == "" {
				break
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("%s drift not repaired in 5 s with a 1 min interval", kind)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s drift repaired in %s", kind, time.Since(t0).Round(time.Millisecond))
	}
}

// quietWindows are 0.5 s windows of a server pinged by one client at 4 to
// 60 pings a second, the rate drifting (TestNADMonitorLSTM sends about
// 20), through the real extractor.
func quietWindows(t *testing.T, n int, server, client netip.Addr) [][]float64 {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 5))
	var out [][]float64
	ext := feature.NewExtractor(server, feature.Config{Window: 500 * time.Millisecond}, func(w *feature.Window) {
		out = append(out, append(append([]float64(nil), w.LSTM[:]...), w.Extra[:]...)) // what the forecaster reads
	})
	ts := int64(1_700_000_000e9)
	rate := 20.0
	for len(out) < n {
		rate = min(60, max(4, rate*math.Exp(0.1*r.NormFloat64())))
		ts += int64(r.ExpFloat64() / rate * float64(time.Second))
		ext.Add(ts, &capture.Meta{Src: client, Dst: server, Proto: 1, TTL: 64, Len: 84})
		ext.Add(ts+int64(200*time.Microsecond), &capture.Meta{Src: server, Dst: client, Proto: 1, TTL: 64, Len: 84})
	}
	return out
}

// TestNADMonitorLSTM: live detection with a registered detector that
// scores with a model file: lstm-unsup with a forecaster trained on quiet
// windows, loaded from the node's model directory, alerts on a real SYN
// flood; a policy naming a model the node does not have reports nad.error.
func TestNADMonitorLSTM(t *testing.T) {
	labtest.RequireOVS(t)
	if _, err := exec.LookPath("hping3"); err != nil {
		labtest.Missing(t, "hping3 not installed")
	}
	ctx := context.Background()
	web, cli := netip.MustParseAddr("10.32.0.1"), netip.MustParseAddr("10.32.0.2")
	m, err := lstm.Train(ctx, lstm.TrainConfig{Kind: lstm.Forecaster, Arch: lstm.Arch{Features: feature.NumLSTM + feature.NumExtra, Seq: 4, LSTM1: 16, LSTM2: 8, Dense1: 16, Dense2: 8},
		Epochs: 20, Seed: 1}, quietWindows(t, 600, web, cli), nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Features, m.Window = detect.ModelFeatures(lstm.Forecaster), 500*time.Millisecond
	dir := t.TempDir()
	if err := m.SaveFile(filepath.Join(dir, "quiet.model")); err != nil {
		t.Fatal(err)
	}
	br := labtest.Bridge(t, "sctn")
	domains := []tenant.Domain{{TID: 32, Name: "nadl", Tenant: "acme", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{
		{Name: "web", MAC: "02:00:00:00:32:01", IP: web.String(), Port: "nlweb"},
		{Name: "cli", MAC: "02:00:00:00:32:02", IP: cli.String(), Port: "nlcli"}},
		ACRs: []tenant.ACR{{Priority: 1, Action: tenant.Pass}}}}}}
	var mu sync.Mutex
	var events []agent.Event
	hosts, a := enforce(t, br, domains, "sctn-", func(e agent.Event) { mu.Lock(); events = append(events, e); mu.Unlock() })
	kinds := func(kind string) []agent.Event {
		mu.Lock()
		defer mu.Unlock()
		var out []agent.Event
		for _, e := range events {
			if e.Kind == kind {
				out = append(out, e)
			}
		}
		return out
	}
	a.ModelDir = dir
	// A model this node does not have: an error event, no monitor.
	domains[0].Subnets[0].VMs[0].NAD = &tenant.NADPolicy{Window: "500ms", Detector: "lstm-unsup", Model: "absent.model"}
	if err := a.Apply(ctx, domains, nil); err != nil {
		t.Fatal(err)
	}
	if errs := kinds("nad.error"); len(errs) == 0 || !strings.Contains(errs[0].Detail, "not in this node's model directory") || strings.Contains(errs[0].Detail, dir) {
		t.Fatalf("missing model: %+v", errs)
	}
	domains[0].Subnets[0].VMs[0].NAD = &tenant.NADPolicy{Window: "500ms", Detector: "lstm-unsup", Model: "quiet.model"}
	if err := a.Apply(ctx, domains, nil); err != nil {
		t.Fatal(err)
	}
	stopPings := pingLoop(ctx, hosts["nlcli"], web)
	time.Sleep(6 * time.Second)
	quiet := len(kinds("nad.alert"))
	if out, err := hosts["nlcli"].Exec(ctx, "hping3", "-q", "-S", "-p", "80", "-c", "3000", "-i", "u300", web.String()); err != nil && len(out) == 0 {
		t.Logf("hping3: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(kinds("nad.alert")) == quiet && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stopPings()
	got := kinds("nad.alert")
	if quiet > 1 || len(got) == quiet {
		t.Fatalf("%d alerts on quiet traffic, %d after the flood: %+v", quiet, len(got), got)
	}
	var al agent.Alert
	if err := json.Unmarshal([]byte(got[len(got)-1].Detail), &al); err != nil || al.Detector != "lstm-unsup" || al.Deviation <= al.Threshold {
		t.Fatalf("alert %+v (%v)", al, err)
	}
	t.Logf("lstm-unsup alert: forecast error %.3g > threshold %.3g, %d packets in the window (%d alerts on quiet traffic)", al.Deviation, al.Threshold, al.Packets, quiet)
}

// pingLoop pings dst from h every 50 ms or so (quiet, regular traffic for
// a profile) until the returned function is called.
func pingLoop(ctx context.Context, h *lab.Host, dst netip.Addr) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				h.Ping(ctx, dst, 1, time.Second)
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
