package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"text/tabwriter"
	"time"

	"secaas/internal/lab"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type labOpts struct {
	file, bridge, prefix string
	output               *string
	tcp                  int
}

func parseLab(name string, env *Env, args []string) (labOpts, error) {
	var o labOpts
	f := newFlags(name, env)
	f.StringVar(&o.file, "f", "", "policy file")
	f.StringVar(&o.bridge, "bridge", "secaas0", "bridge")
	f.StringVar(&o.prefix, "prefix", "secaas-", "namespace name prefix")
	o.output = addOutput(f)
	f.IntVar(&o.tcp, "tcp", 22, "TCP port to test connections on (0: none)")
	if _, err := parse(f, args); err != nil {
		return o, err
	}
	return o, mustFile(o.file)
}

func labUp(ctx context.Context, env *Env, args []string) error {
	o, err := parseLab("lab up", env, args)
	if err != nil {
		return err
	}
	if err := lab.Available(); err != nil {
		return err
	}
	_, n, err := loadNet(env, o.file)
	if err != nil {
		return err
	}
	br := ovs.NewBridge(o.bridge)
	if err := br.Ensure(ctx); err != nil {
		return err
	}
	hosts, err := lab.HostsFor(ctx, br, n, o.prefix, nil)
	if err != nil {
		return err
	}
	for _, d := range n.Domains {
		for _, vm := range d.VMs {
			h := hosts[vm.Port]
			fmt.Fprintf(env.Stdout, "%-10s netns %-16s port %-8s %s %s\n", vm.Name, h.NS, h.Port, h.MAC, h.IP)
		}
	}
	return nil
}

func labDown(ctx context.Context, env *Env, args []string) error {
	o, err := parseLab("lab down", env, args)
	if err != nil {
		return err
	}
	_, n, err := loadNet(env, o.file)
	if err != nil {
		return err
	}
	br := ovs.NewBridge(o.bridge)
	for _, h := range labHosts(n, o.prefix) {
		h.Remove(ctx, br)
	}
	return nil
}

func labHosts(n *tenant.Net, prefix string) map[string]*lab.Host {
	hosts := map[string]*lab.Host{}
	for _, d := range n.Domains {
		for _, vm := range d.VMs {
			hosts[vm.Port] = lab.HostFor(prefix, vm)
		}
	}
	return hosts
}

// MatrixRow is one ordered VM pair of the reachability matrix.
type MatrixRow struct {
	Domain     int    `json:"tid"`
	From       string `json:"from"`
	To         string `json:"to"`
	Ping       bool   `json:"ping"`
	PingOracle bool   `json:"ping_oracle"`
	TCP        *bool  `json:"tcp,omitempty"`
	TCPOracle  *bool  `json:"tcp_oracle,omitempty"`
}

// connectPasses is the oracle's answer for a TCP connection: the SYN and the
// SYN-ACK must both pass (the reply as an established packet).
func connectPasses(n *tenant.Net, a, b *tenant.RVM, port uint16) bool {
	syn := tenant.Packet{InPort: a.Port, EthSrc: a.HW, EthDst: b.HW, EthType: tenant.EthIPv4, Src: a.Addr, Dst: b.Addr, Proto: tenant.ProtoTCP, SrcPort: 40000, DstPort: port}
	ack := tenant.Packet{InPort: b.Port, EthSrc: b.HW, EthDst: a.HW, EthType: tenant.EthIPv4, Src: b.Addr, Dst: a.Addr, Proto: tenant.ProtoTCP, SrcPort: port, DstPort: 40000, Established: true}
	return n.Decide(syn).Action == tenant.Pass && n.Decide(ack).Action == tenant.Pass
}

func pingPasses(n *tenant.Net, a, b *tenant.RVM) bool {
	req := tenant.Packet{InPort: a.Port, EthSrc: a.HW, EthDst: b.HW, EthType: tenant.EthIPv4, Src: a.Addr, Dst: b.Addr, Proto: tenant.ProtoICMP, ICMPType: 8}
	rep := tenant.Packet{InPort: b.Port, EthSrc: b.HW, EthDst: a.HW, EthType: tenant.EthIPv4, Src: b.Addr, Dst: a.Addr, Proto: tenant.ProtoICMP, Established: true}
	return n.Decide(req).Action == tenant.Pass && n.Decide(rep).Action == tenant.Pass
}

// Matrix measures reachability between every ordered pair of VMs of each
// domain with real pings and TCP connects from the lab's namespaces.
func Matrix(ctx context.Context, n *tenant.Net, hosts map[string]*lab.Host, tcpPort int) ([]MatrixRow, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	if tcpPort > 0 {
		for _, h := range hosts {
			l, err := h.ListenTCP(tcpPort)
			if err != nil {
				return nil, fmt.Errorf("listen in %s: %w", h.NS, err)
			}
			listeners = append(listeners, l)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
	}
	var rows []MatrixRow
	for _, d := range n.Domains {
		for _, a := range d.VMs {
			for _, b := range d.VMs {
				if a != b {
					rows = append(rows, MatrixRow{Domain: d.TID, From: a.Name, To: b.Name, PingOracle: pingPasses(n, a, b)})
				}
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range rows {
		wg.Add(1)
		go func(r *MatrixRow) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			a, _ := n.VMByName(r.Domain, r.From)
			b, _ := n.VMByName(r.Domain, r.To)
			r.Ping = hosts[a.Port].Ping(ctx, b.Addr, 2, time.Second)
			if tcpPort > 0 {
				ok := connectPasses(n, a, b, uint16(tcpPort))
				r.TCPOracle = &ok
				c, err := hosts[a.Port].DialTCP(netip.AddrPortFrom(b.Addr, uint16(tcpPort)), 1500*time.Millisecond)
				got := err == nil
				if got {
					c.Close()
				}
				r.TCP = &got
			}
		}(&rows[i])
	}
	wg.Wait()
	return rows, nil
}

func labMatrix(ctx context.Context, env *Env, args []string) error {
	o, err := parseLab("lab matrix", env, args)
	if err != nil {
		return err
	}
	_, n, err := loadNet(env, o.file)
	if err != nil {
		return err
	}
	rows, err := Matrix(ctx, n, labHosts(n, o.prefix), o.tcp)
	if err != nil {
		return err
	}
	mismatch := 0
	if err := render(env, *o.output, rows, func(*table) { mismatch = PrintMatrix(env.Stdout, rows, o.tcp) }); err != nil {
		return err
	}
	if mismatch > 0 {
		return fmt.Errorf("%d measurements disagree with the oracle", mismatch)
	}
	return nil
}

// PrintMatrix writes the matrix as a table and returns the disagreements.
func PrintMatrix(w io.Writer, rows []MatrixRow, port int) int {
	word := func(b bool) string {
		if b {
			return "pass"
		}
		return "drop"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "TID\tFROM\tTO\tPING\tORACLE")
	if port > 0 {
		fmt.Fprintf(tw, "\tTCP/%d\tORACLE", port)
	}
	fmt.Fprintln(tw)
	bad := 0
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s", r.Domain, r.From, r.To, word(r.Ping), word(r.PingOracle))
		if r.Ping != r.PingOracle {
			bad++
		}
		if r.TCP != nil {
			fmt.Fprintf(tw, "\t%s\t%s", word(*r.TCP), word(*r.TCPOracle))
			if *r.TCP != *r.TCPOracle {
				bad++
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	return bad
}
