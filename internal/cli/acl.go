package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/flow"
	"secaas/internal/ovs"
	"secaas/internal/tenant"
)

// offlinePorts numbers ports 1.. in declaration order (VMs, then uplinks),
// overridden by --ports name=N,...
func offlinePorts(n *tenant.Net, spec string) (flow.Ports, error) {
	ports := flow.Ports{}
	next := uint32(1)
	for _, d := range n.Domains {
		for _, vm := range d.VMs {
			ports[vm.Port] = next
			next++
		}
	}
	for _, d := range n.Domains {
		for _, u := range d.Uplinks {
			if _, ok := ports[u]; !ok {
				ports[u] = next
				next++
			}
		}
	}
	for _, kv := range splitList(spec) {
		name, num, ok := strings.Cut(kv, "=")
		v, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil || v == 0 {
			return nil, fmt.Errorf("--ports: %q is not name=N", kv)
		}
		ports[name] = uint32(v)
	}
	return ports, nil
}

func aclCompile(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("acl compile", env)
	file := fs.String("f", "", "policy file (YAML or JSON)")
	portSpec := fs.String("ports", "", "OpenFlow port numbers, name=N,... (default: 1.. in declaration order)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := mustFile(*file); err != nil {
		return err
	}
	_, n, err := loadNet(env, *file)
	if err != nil {
		return err
	}
	ports, err := offlinePorts(n, *portSpec)
	if err != nil {
		return err
	}
	set, err := flow.Compile(n, ports)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "# secaas flow set for %s: %d flows; ports:", *file, len(set.Flows))
	for _, d := range n.Domains {
		for _, vm := range d.VMs {
			fmt.Fprintf(env.Stdout, " %s=%d", vm.Port, ports[vm.Port])
		}
	}
	fmt.Fprintln(env.Stdout)
	fmt.Fprint(env.Stdout, set.String())
	return nil
}

type packetFlags struct {
	from, to, proto *string
	sport, dport    *uint
	tid             *int
}

func addPacketFlags(fs *flag.FlagSet) packetFlags {
	return packetFlags{
		from:  fs.String("from", "", "source VM name"),
		to:    fs.String("to", "", "destination VM name"),
		proto: fs.String("proto", "tcp", "tcp, udp or icmp"),
		sport: fs.Uint("sport", 0, "source port (default 40000 for tcp/udp)"),
		dport: fs.Uint("dport", 0, "destination port"),
		tid:   fs.Int("tid", 0, "domain TID (default: search every domain)"),
	}
}

func (p packetFlags) request() (controller.CheckRequest, error) {
	if *p.from == "" || *p.to == "" {
		return controller.CheckRequest{}, fmt.Errorf("--from and --to are required")
	}
	if *p.sport > 65535 || *p.dport > 65535 {
		return controller.CheckRequest{}, fmt.Errorf("ports are 0..65535")
	}
	return controller.CheckRequest{From: *p.from, To: *p.to, Proto: *p.proto, SrcPort: uint16(*p.sport), DstPort: uint16(*p.dport)}, nil
}

func (p packetFlags) packet(n *tenant.Net) (tenant.Packet, error) {
	req, err := p.request()
	if err != nil {
		return tenant.Packet{}, err
	}
	tid := *p.tid
	if tid == 0 {
		vm, ok := n.VMByName(0, req.From)
		if !ok {
			return tenant.Packet{}, fmt.Errorf("unknown vm %q", req.From)
		}
		tid = vm.Subnet.Domain.TID
	}
	return controller.BuildPacket(n, tid, req)
}

// loadPacket parses the flags, loads the policy file (flag -f) and builds
// the packet the flags describe.
func loadPacket(env *Env, fs *flag.FlagSet, args []string, pf packetFlags) (*tenant.Net, tenant.Packet, error) {
	if _, err := parse(fs, args); err != nil {
		return nil, tenant.Packet{}, err
	}
	_, n, err := loadNet(env, fs.Lookup("f").Value.String())
	if err != nil {
		return nil, tenant.Packet{}, err
	}
	p, err := pf.packet(n)
	return n, p, err
}

func aclCheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("acl check", env)
	fs.String("f", "", "policy file (- reads standard input)")
	out := addOutput(fs)
	pf := addPacketFlags(fs)
	n, p, err := loadPacket(env, fs, args, pf)
	if err != nil {
		return err
	}
	v := n.Decide(p)
	if err := render(env, *out, v, func(*table) { printVerdict(env, "oracle", v.Action, v.Out, v.Rules, v.Reason) }); err != nil {
		return err
	}
	return verdictExit(v.Action)
}

// verdictExit is exit status 3 for a DROP verdict, so that scripts can
// branch on it.
func verdictExit(a tenant.Action) error {
	if a == tenant.Drop {
		return exitError(ExitNegative)
	}
	return nil
}

func printVerdict(env *Env, who string, a tenant.Action, out []string, rules []tenant.RuleRef, reason string) {
	var rs []string
	for _, r := range rules {
		rs = append(rs, r.String())
	}
	fmt.Fprintf(env.Stdout, "%-7s %-4s out=%s rules=%s", who, strings.ToUpper(string(a)), orDash(strings.Join(out, ",")), orDash(strings.Join(rs, ",")))
	if reason != "" {
		fmt.Fprintf(env.Stdout, " (%s)", reason)
	}
	fmt.Fprintln(env.Stdout)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func aclTrace(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("acl trace", env)
	file := fs.String("f", "", "policy file (to name the rules and compute the oracle's verdict)")
	bridge := fs.String("bridge", "secaas0", "bridge")
	out := addOutput(fs)
	raw := fs.Bool("raw", false, "also print ofproto/trace's own output")
	pf := addPacketFlags(fs)
	n, p, err := loadPacket(env, fs, args, pf)
	if err != nil {
		return err
	}
	br := ovs.NewBridge(*bridge)
	ports, err := br.Ports(ctx)
	if err != nil {
		return err
	}
	set, err := flow.Compile(n, ports)
	if err != nil {
		return err
	}
	tr, err := agent.TraceOn(ctx, br, ports, set, p)
	if err != nil {
		return err
	}
	v := n.Decide(p)
	agree := tr.Action == v.Action
	tr2 := tr
	if !*raw {
		tr2.Raw = ""
	}
	err = render(env, *out, map[string]any{"oracle": v, "switch": tr2, "agree": agree}, func(*table) {
		printVerdict(env, "oracle", v.Action, v.Out, v.Rules, v.Reason)
		printVerdict(env, "switch", tr.Action, tr.Out, tr.Rules, "ofproto/trace on "+*bridge)
		if *raw {
			fmt.Fprint(env.Stdout, tr.Raw)
		}
	})
	if err != nil {
		return err
	}
	if !agree {
		return fmt.Errorf("the switch disagrees with the oracle (is the policy applied? secaas acl apply -f %s --bridge %s)", *file, *bridge)
	}
	return verdictExit(tr.Action)
}

func aclApply(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("acl apply", env)
	file := fs.String("f", "", "policy file (- reads standard input)")
	bridge := fs.String("bridge", "secaas0", "bridge")
	allowEmpty := fs.Bool("allow-empty", false, "apply a policy with no domain or no VM (the bridge then drops everything)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	p, err := readPolicy(env, *file)
	if err != nil {
		return err
	}
	vms := 0
	for _, d := range p.Domains {
		for _, s := range d.Subnets {
			vms += len(s.VMs)
		}
	}
	if (len(p.Domains) == 0 || vms == 0) && !*allowEmpty {
		return fmt.Errorf("%s has %d domains and %d VMs: applying it makes %s drop everything (--allow-empty to do so)", *file, len(p.Domains), vms, *bridge)
	}
	a := agent.New(ovs.NewBridge(*bridge), discardLog(), nil)
	if err := a.Start(ctx); err != nil {
		return err
	}
	if err := a.Apply(ctx, p.Domains, nil); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "applied %d domains to %s: %d flows\n", len(p.Domains), *bridge, strings.Count(a.Flows(), "\n"))
	return nil
}

// aclMigrate rewrites a policy file of an earlier version for the stricter
// model: VMs named like addresses, MACs or wildcards are renamed with the
// rules that named them (their meaning kept), prefixes with host bits are
// masked. The result goes to stdout (or --out); what changed, to stderr.
func aclMigrate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("acl migrate", env)
	file := fs.String("f", "", "policy file (YAML or JSON)")
	out := fs.String("out", "", "write the migrated policy here instead of stdout")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if err := mustFile(*file); err != nil {
		return err
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	p, err := tenant.ParsePolicy(b)
	if err != nil {
		return err
	}
	var changes []string
	for i := range p.Domains {
		d := &p.Domains[i]
		changes = append(changes, tenant.RenameAmbiguous(d)...)
		changes = append(changes, tenant.MaskPrefixes(d)...)
	}
	if _, err := tenant.NewNet(p.Domains); err != nil {
		return fmt.Errorf("the migrated policy is still invalid: %w", err)
	}
	y, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	for _, c := range changes {
		fmt.Fprintln(env.Stderr, c)
	}
	if len(changes) == 0 {
		fmt.Fprintln(env.Stderr, "nothing to migrate")
	}
	if *out != "" {
		return os.WriteFile(*out, y, 0o644)
	}
	_, err = env.Stdout.Write(y)
	return err
}
