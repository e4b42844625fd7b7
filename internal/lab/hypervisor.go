package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"

	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// Hypervisor is a hypervisor host on this machine: a network namespace
// whose own Open vSwitch (a private instance, its ovs-vswitchd inside the
// namespace) holds the VMs' ports, and whose underlay address sits on
// that switch's bridge "underlay", wired to an Underlay Linux bridge in
// this process's namespace. Tunnels between hypervisors cross the
// underlay as they would cross a data-centre network.
type Hypervisor struct {
	NS       string
	OVS      *ovs.Instance
	Underlay netip.Prefix
	link     string // this namespace's end of the underlay veth
}

// Underlay creates Linux bridge name (removing a leftover first).
func Underlay(ctx context.Context, name string) error {
	run(ctx, "ip", "link", "del", name)
	for _, s := range [][]string{{"ip", "link", "add", name, "type", "bridge"}, {"ip", "link", "set", name, "up"}} {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("underlay %s: %w", name, err)
		}
	}
	return nil
}

// DelUnderlay removes Linux bridge name.
func DelUnderlay(ctx context.Context, name string) { run(ctx, "ip", "link", "del", name) }

// StartHypervisor makes hypervisor ns (at most 12 characters) with its
// Open vSwitch's files under dir and address addr on underlay.
func StartHypervisor(ctx context.Context, dir, ns, underlay string, addr netip.Prefix) (*Hypervisor, error) {
	hv := &Hypervisor{NS: ns, Underlay: addr, link: ns + "-ul"}
	hv.Stop(ctx)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "link", "add", hv.link, "type", "veth", "peer", "name", "ul0", "netns", ns},
		{"ip", "link", "set", hv.link, "master", underlay, "up"},
		{"ip", "-n", ns, "link", "set", "ul0", "up"},
	} {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			hv.Stop(ctx)
			return nil, fmt.Errorf("hypervisor %s: %w", ns, err)
		}
	}
	in, err := ovs.StartPrivate(ctx, dir, []string{"ip", "netns", "exec", ns})
	if err != nil {
		hv.Stop(ctx)
		return nil, fmt.Errorf("hypervisor %s: %w", ns, err)
	}
	hv.OVS = in
	// The underlay bridge forwards as a learning switch (no fail_mode:
	// its default flow is NORMAL); its own port holds the address.
	if _, err := in.Vsctl(ctx, "--timeout=10", "add-br", "underlay", "--", "set", "bridge", "underlay", "datapath_type=netdev",
		"--", "add-port", "underlay", "ul0"); err != nil {
		hv.Stop(ctx)
		return nil, fmt.Errorf("hypervisor %s: %w", ns, err)
	}
	for _, s := range [][]string{
		{"ip", "-n", ns, "addr", "add", addr.String(), "dev", "underlay"},
		{"ip", "-n", ns, "link", "set", "underlay", "up"},
	} {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			hv.Stop(ctx)
			return nil, fmt.Errorf("hypervisor %s: %w", ns, err)
		}
	}
	return hv, nil
}

// Bridge is a handle on bridge name of the hypervisor's switch.
func (hv *Hypervisor) Bridge(name string) *ovs.Bridge { return hv.OVS.Bridge(name) }

// HostsFor is lab.HostsFor with the VMs' ports on this hypervisor.
func (hv *Hypervisor) HostsFor(ctx context.Context, br *ovs.Bridge, n *tenant.Net, prefix string, keep func(*tenant.RVM) bool) (map[string]*Host, error) {
	return hostsFor(ctx, br, hv.NS, n, prefix, keep)
}

// Stop ends the hypervisor's switch and removes its namespace and its
// end of the underlay; it ignores what is already gone.
func (hv *Hypervisor) Stop(ctx context.Context) {
	if hv.OVS != nil {
		hv.OVS.Stop()
	}
	run(ctx, "ip", "netns", "del", hv.NS)
	run(ctx, "ip", "link", "del", hv.link)
}
