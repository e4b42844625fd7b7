package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// Host is a network namespace with one interface (eth0) whose peer is a
// switch port.
type Host struct {
	NS   string     // namespace name
	Port string     // the switch-side veth, named like the VM's port
	MAC  tenant.MAC // eth0's MAC
	IP   netip.Prefix
}

// Available reports whether namespaces can be made here (root, iproute2).
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("lab: iproute2 (ip) not installed")
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// AddHost creates namespace ns with eth0 (mac, ip) and attaches its peer to
// br as port. Leftovers of the same names are removed first.
func AddHost(ctx context.Context, br *ovs.Bridge, ns, port string, mac tenant.MAC, ip netip.Prefix) (*Host, error) {
	return addHost(ctx, br, "", ns, port, mac, ip)
}

// addHost is AddHost with the switch side in namespace hv ("": this
// process's).
func addHost(ctx context.Context, br *ovs.Bridge, hv, ns, port string, mac tenant.MAC, ip netip.Prefix) (*Host, error) {
	h := &Host{NS: ns, Port: port, MAC: mac, IP: ip}
	h.Remove(ctx, br)
	// IPv4 hosts keep quiet on IPv6; IPv6 hosts get their address without
	// duplicate address detection, so that they are usable at once.
	v6 := []string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"}
	addr := []string{"ip", "-n", ns, "addr", "add", ip.String(), "dev", "eth0"}
	if ip.Addr().Is6() {
		v6 = []string{"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"}
		addr = append(addr, "nodad")
	}
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "-n", ns, "link", "set", "eth0", "address", mac.String()},
		v6,
		addr,
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		// Userspace OVS does not complete checksums that veth offloads.
		{"ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"},
	}
	if hv == "" {
		steps = append(steps, []string{"ip", "link", "set", port, "up"}, []string{"ethtool", "-K", port, "tx", "off"})
	} else {
		steps = append(steps, []string{"ip", "link", "set", port, "netns", hv}, []string{"ip", "-n", hv, "link", "set", port, "up"},
			[]string{"ip", "netns", "exec", hv, "ethtool", "-K", port, "tx", "off"})
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			h.Remove(ctx, br)
			return nil, fmt.Errorf("add host %s: %w", ns, err)
		}
	}
	if err := br.AddPort(ctx, port, 0); err != nil {
		h.Remove(ctx, br)
		return nil, err
	}
	return h, nil
}

// Remove deletes the host's namespace, its veth pair and the pair's port
// on br; it ignores what is already gone. It touches nothing that is not
// this host's: a link or port of the same name whose peer is not in this
// host's namespace (another lab's, from the same policy with another
// prefix) stays.
func (h *Host) Remove(ctx context.Context, br *ovs.Bridge) {
	// Deleting the namespace's end deletes the pair, and with it the host
	// end: then the bridge's port of that name was this host's.
	if _, err := run(ctx, "ip", "-n", h.NS, "link", "del", "eth0"); err == nil && br != nil {
		br.DelPort(ctx, h.Port)
	}
	run(ctx, "ip", "netns", "del", h.NS)
}

// Exec runs a command inside the namespace.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
}

// Ping sends count echo requests (ICMP or ICMPv6, by dst) and reports
// whether any was answered.
func (h *Host) Ping(ctx context.Context, dst netip.Addr, count int, wait time.Duration) bool {
	fam := "-4"
	if dst.Is6() {
		fam = "-6"
	}
	_, err := h.Exec(ctx, "ping", fam, "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", fmt.Sprintf("%.1f", wait.Seconds()), dst.String())
	return err == nil
}

// Do runs fn with the calling OS thread inside the namespace; sockets
// created by fn stay in it.
func (h *Host) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("netns %s: %w", h.NS, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("netns %s: %w", h.NS, err)
	}
	defer netns.Set(orig)
	return fn()
}

// ListenTCP opens a TCP listener in the namespace.
func (h *Host) ListenTCP(port int) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() (err error) {
		l, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", h.IP.Addr(), port))
		return err
	})
	return l, err
}

// DialTCP connects from the namespace.
func (h *Host) DialTCP(dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", dst.String(), timeout)
		return err
	})
	return c, err
}

// ListenUDP opens a UDP socket on port in the namespace.
func (h *Host) ListenUDP(port int) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Do(func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.IP.Addr(), uint16(port))))
		return err
	})
	return c, err
}

// HostsFor creates one host per VM of the domains whose port passes keep
// (nil: all). Namespaces are named prefix+port.
func HostsFor(ctx context.Context, br *ovs.Bridge, n *tenant.Net, prefix string, keep func(*tenant.RVM) bool) (map[string]*Host, error) {
	return hostsFor(ctx, br, "", n, prefix, keep)
}

func hostsFor(ctx context.Context, br *ovs.Bridge, hv string, n *tenant.Net, prefix string, keep func(*tenant.RVM) bool) (map[string]*Host, error) {
	hosts := map[string]*Host{}
	for _, d := range n.Domains {
		for _, vm := range d.VMs {
			if keep != nil && !keep(vm) {
				continue
			}
			want := HostFor(prefix, vm)
			h, err := addHost(ctx, br, hv, want.NS, want.Port, want.MAC, want.IP)
			if err != nil {
				RemoveAll(ctx, br, hosts)
				return nil, err
			}
			hosts[vm.Port] = h
		}
	}
	return hosts, nil
}

// HostFor describes the lab host of vm (namespace prefix+port, /24 for
// IPv4, /64 for IPv6) without creating anything.
func HostFor(prefix string, vm *tenant.RVM) *Host {
	bits := 24
	if vm.Addr.Is6() {
		bits = 64
	}
	return &Host{NS: prefix + vm.Port, Port: vm.Port, MAC: vm.HW, IP: netip.PrefixFrom(vm.Addr, bits)}
}

// RemoveAll removes every host.
func RemoveAll(ctx context.Context, br *ovs.Bridge, hosts map[string]*Host) {
	for _, h := range hosts {
		h.Remove(ctx, br)
	}
}
