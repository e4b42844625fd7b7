package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"secaas/internal/store"
	"secaas/internal/tenant"
)

// client talks to secaasd.
type client struct {
	base      string
	token     string // --token; never a flag default, so help never shows it
	tokenFile string // --token-file
	wait      string // --wait: how long a change waits for its hosts
	env       *Env
	http      *http.Client
}

// The API token comes, first found, from --token, --token-file,
// $SECAAS_TOKEN or the file $SECAAS_TOKEN_FILE: read when a request is
// made, never shown in help or usage.
func addClientFlags(fs *flag.FlagSet, env *Env) *client {
	c := &client{env: env, http: &http.Client{Timeout: 60 * time.Second}}
	def := env.Getenv("SECAAS_API")
	if def == "" {
		def = "http://127.0.0.1:8470"
	}
	fs.StringVar(&c.base, "api", def, "secaasd API address (default $SECAAS_API)")
	fs.StringVar(&c.token, "token", "", "API bearer token (prefer $SECAAS_TOKEN or a file: a flag shows in the process list)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the API bearer token (default $SECAAS_TOKEN_FILE)")
	fs.StringVar(&c.wait, "wait", "", "how long a change waits for the hosts it goes to to apply it (e.g. 10s; 0: not at all; default: the daemon's, 30s)")
	return c
}

// bearer returns the API token from the first source that has one.
func (c *client) bearer() (string, error) {
	if c.token != "" {
		return c.token, nil
	}
	file := c.tokenFile
	if file == "" {
		if t := c.env.Getenv("SECAAS_TOKEN"); t != "" {
			return t, nil
		}
		file = c.env.Getenv("SECAAS_TOKEN_FILE")
	}
	if file == "" {
		return "", nil // the daemon answers 401 with its own message
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// authorize sets the request's bearer token.
func (c *client) authorize(req *http.Request) error {
	tok, err := c.bearer()
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

// reach explains a failed connection: which address was tried and how to
// start secaasd or point at another one.
func (c *client) reach(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("cannot reach secaasd at %s (%v): start it (make demo, or bin/secaasd as root) or point at it with --api or $SECAAS_API", c.base, op.Err)
	}
	return err
}

func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	if c.wait != "" && method != http.MethodGet {
		if _, err := time.ParseDuration(c.wait); err != nil {
			return usageError{fmt.Errorf("--wait %q: a duration such as 10s or 0", c.wait)}
		}
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "wait=" + url.QueryEscape(c.wait)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base, "/")+path, body)
	if err != nil {
		return err
	}
	if err := c.authorize(req); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return c.reach(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode == http.StatusAccepted {
		// Stored, but a host has not applied it yet: say so, and go on.
		var e struct{ Error, Message string }
		if json.Unmarshal(b, &e) == nil && e.Error == "pending" {
			fmt.Fprintf(c.env.Stderr, "secaas: %s\n", e.Message)
			return nil
		}
	}
	if resp.StatusCode >= 300 {
		var e struct{ Message string }
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// stream copies a Server-Sent Events stream's data lines to stdout.
func (c *client) stream(ctx context.Context, env *Env, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(c.base, "/")+path, nil)
	if err != nil {
		return err
	}
	if err := c.authorize(req); err != nil {
		return err
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return c.reach(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			fmt.Fprintln(env.Stdout, data)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// simple runs a client command with positional arguments.
func simple(name string, env *Env, args []string, npos int, extra func(fs *flag.FlagSet)) (*client, []string, error) {
	fs := newFlags(name, env)
	c := addClientFlags(fs, env)
	if extra != nil {
		extra(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(pos) != npos {
		return nil, nil, fmt.Errorf("want %d argument(s), got %d", npos, len(pos))
	}
	return c, pos, nil
}

func tenantCreate(ctx context.Context, env *Env, args []string) error {
	var name string
	c, pos, err := simple("tenant create", env, args, 1, func(fs *flag.FlagSet) { fs.StringVar(&name, "name", "", "display name") })
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do(ctx, "POST", "/v1/tenants", map[string]string{"id": pos[0], "name": name}, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}

// readVerb is simple for a read command: it also declares -o.
func readVerb(name string, env *Env, args []string, npos int, extra func(fs *flag.FlagSet)) (*client, []string, string, error) {
	var format *string
	c, pos, err := simple(name, env, args, npos, func(fs *flag.FlagSet) {
		format = addOutput(fs)
		if extra != nil {
			extra(fs)
		}
	})
	if err != nil {
		return nil, nil, "", err
	}
	return c, pos, *format, nil
}

func tenantList(ctx context.Context, env *Env, args []string) error {
	c, _, format, err := readVerb("tenant list", env, args, 0, nil)
	if err != nil {
		return err
	}
	var out []store.Tenant
	if err := c.do(ctx, "GET", "/v1/tenants", nil, &out); err != nil {
		return err
	}
	return render(env, format, out, func(t *table) {
		t.row("ID", "NAME", "CREATED")
		for _, tn := range out {
			t.row(tn.ID, tn.Name, tn.CreatedAt.Format(time.RFC3339))
		}
	})
}

func tenantDelete(ctx context.Context, env *Env, args []string) error {
	c, pos, err := simple("tenant delete", env, args, 1, nil)
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", "/v1/tenants/"+pos[0], nil, nil)
}

func domainCreate(ctx context.Context, env *Env, args []string) error {
	var file, as string
	c, _, err := simple("domain create", env, args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "policy file")
		fs.StringVar(&as, "tenant", "", "tenant to own the domains (admin token; default: the file's)")
	})
	if err != nil {
		return err
	}
	if err := mustFile(file); err != nil {
		return err
	}
	p, _, err := loadNet(env, file)
	if err != nil {
		return err
	}
	for _, d := range p.Domains {
		if as != "" {
			d.Tenant = as
		}
		var out tenant.Domain
		if err := c.do(ctx, "POST", "/v1/domains", d, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "created domain %d (%s) for tenant %s\n", out.TID, out.Name, out.Tenant)
	}
	return nil
}

func domainList(ctx context.Context, env *Env, args []string) error {
	c, _, format, err := readVerb("domain list", env, args, 0, nil)
	if err != nil {
		return err
	}
	var ds []tenant.Domain
	if err := c.do(ctx, "GET", "/v1/domains", nil, &ds); err != nil {
		return err
	}
	return render(env, format, ds, func(t *table) { domainRows(t, ds) })
}

// domainRows is the table of domains; wide adds the uplinks and revision.
func domainRows(t *table, ds []tenant.Domain) {
	head := []string{"TID", "NAME", "TENANT", "MODE", "SUBNETS", "VMS", "ACRS"}
	if t.wide {
		head = append(head, "UPLINKS", "REVISION")
	}
	t.row(head...)
	for _, d := range ds {
		vms, acrs := 0, 0
		for _, s := range d.Subnets {
			vms += len(s.VMs)
			acrs += len(s.ACRs)
		}
		mode := d.Mode
		if mode == "" {
			mode = tenant.Stateless
		}
		r := []string{strconv.Itoa(d.TID), d.Name, d.Tenant, string(mode), strconv.Itoa(len(d.Subnets)), strconv.Itoa(vms), strconv.Itoa(acrs)}
		if t.wide {
			r = append(r, orDash(strings.Join(d.Uplinks, ",")), strconv.Itoa(d.Revision))
		}
		t.row(r...)
	}
}

func domainGet(ctx context.Context, env *Env, args []string) error {
	c, pos, format, err := readVerb("domain get", env, args, 1, nil)
	if err != nil {
		return err
	}
	var d tenant.Domain
	if err := c.do(ctx, "GET", "/v1/domains/"+pos[0], nil, &d); err != nil {
		return err
	}
	return render(env, format, d, func(t *table) { domainRows(t, []tenant.Domain{d}) })
}

func domainDelete(ctx context.Context, env *Env, args []string) error {
	c, pos, err := simple("domain delete", env, args, 1, nil)
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", "/v1/domains/"+pos[0], nil, nil)
}

func vmAdd(ctx context.Context, env *Env, args []string) error {
	var tid int
	var subnet string
	var vm tenant.VM
	c, _, err := simple("vm add", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&subnet, "subnet", "", "subnet")
		fs.StringVar(&vm.Name, "name", "", "VM name")
		fs.StringVar(&vm.MAC, "mac", "", "MAC")
		fs.StringVar(&vm.IP, "ip", "", "IP")
		fs.StringVar(&vm.Port, "port", "", "switch port")
		fs.StringVar(&vm.UUID, "uuid", "", "UUID (default: generated)")
	})
	if err != nil {
		return err
	}
	var out tenant.VM
	if err := c.do(ctx, "POST", fmt.Sprintf("/v1/domains/%d/subnets/%s/vms", tid, subnet), vm, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}

func vmList(ctx context.Context, env *Env, args []string) error {
	var tid int
	c, _, format, err := readVerb("vm list", env, args, 0, func(fs *flag.FlagSet) { fs.IntVar(&tid, "tid", 0, "domain TID") })
	if err != nil {
		return err
	}
	var out []struct {
		tenant.VM
		Subnet string `json:"subnet"`
	}
	if err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d/vms", tid), nil, &out); err != nil {
		return err
	}
	return render(env, format, out, func(t *table) {
		head := []string{"NAME", "SUBNET", "IP", "MAC", "PORT"}
		if t.wide {
			head = append(head, "UUID", "SERVICES")
		}
		t.row(head...)
		for _, vm := range out {
			r := []string{vm.Name, vm.Subnet, vm.IP, vm.MAC, vm.Port}
			if t.wide {
				var svc []string
				for name, on := range map[string]bool{"nad": vm.NAD != nil, "vmi": vm.VMI != nil, "av": vm.AV != nil} {
					if on {
						svc = append(svc, name)
					}
				}
				slices.Sort(svc)
				r = append(r, vm.UUID, orDash(strings.Join(svc, ",")))
			}
			t.row(r...)
		}
	})
}

func vmDelete(ctx context.Context, env *Env, args []string) error {
	var tid int
	c, pos, err := simple("vm delete", env, args, 1, func(fs *flag.FlagSet) { fs.IntVar(&tid, "tid", 0, "domain TID") })
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/domains/%d/vms/%s", tid, pos[0]), nil, nil)
}

func acrAdd(ctx context.Context, env *Env, args []string) error {
	var tid, prio int
	var subnet, srcmac, dstmac, srcip, dstip, proto, sport, dport, action string
	c, _, err := simple("acr add", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&subnet, "subnet", "", "subnet whose perimeter set gets the rule")
		fs.IntVar(&prio, "priority", 0, "priority (0..65535, higher first)")
		fs.StringVar(&srcmac, "srcmac", "", "source MACs or VM names, comma separated")
		fs.StringVar(&dstmac, "dstmac", "", "destination MACs or VM names")
		fs.StringVar(&srcip, "srcip", "", "source prefixes or VM names")
		fs.StringVar(&dstip, "dstip", "", "destination prefixes or VM names")
		fs.StringVar(&proto, "proto", "", "tcp, udp, icmp, icmp6 (default any)")
		fs.StringVar(&sport, "sport", "", "source port or range lo-hi")
		fs.StringVar(&dport, "dport", "", "destination port or range lo-hi")
		fs.StringVar(&action, "action", "", "pass or drop")
	})
	if err != nil {
		return err
	}
	a := tenant.ACR{Priority: prio, SrcMAC: splitList(srcmac), DstMAC: splitList(dstmac), SrcIP: splitList(srcip),
		DstIP: splitList(dstip), Proto: proto, Action: tenant.Action(action)}
	if a.SrcPort, err = tenant.ParsePortRange(sport); err != nil {
		return fmt.Errorf("--sport: %w", err)
	}
	if a.DstPort, err = tenant.ParsePortRange(dport); err != nil {
		return fmt.Errorf("--dport: %w", err)
	}
	var out tenant.ACR
	body := struct {
		tenant.ACR
		Subnet string `json:"subnet"`
	}{a, subnet}
	if err := c.do(ctx, "POST", fmt.Sprintf("/v1/domains/%d/acrs", tid), body, &out); err != nil {
		return err
	}
	return printJSON(env.Stdout, out)
}

func acrList(ctx context.Context, env *Env, args []string) error {
	var tid int
	c, _, format, err := readVerb("acr list", env, args, 0, func(fs *flag.FlagSet) { fs.IntVar(&tid, "tid", 0, "domain TID") })
	if err != nil {
		return err
	}
	var out []struct {
		tenant.ACR
		Subnet string `json:"subnet"`
	}
	if err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d/acrs", tid), nil, &out); err != nil {
		return err
	}
	return render(env, format, out, func(t *table) {
		head := []string{"ID", "SUBNET", "PRIORITY", "ACTION", "PROTO", "SRC", "DST", "DPORT"}
		if t.wide {
			head = append(head, "SPORT", "SRCIP", "DSTIP")
		}
		t.row(head...)
		for _, a := range out {
			dport := "any"
			if !a.DstPort.IsZero() {
				dport = a.DstPort.String()
			}
			r := []string{a.ID, a.Subnet, strconv.Itoa(a.Priority), string(a.Action), orDash(a.Proto),
				orDash(strings.Join(a.SrcMAC, ",")), orDash(strings.Join(a.DstMAC, ",")), dport}
			if t.wide {
				sport := "any"
				if !a.SrcPort.IsZero() {
					sport = a.SrcPort.String()
				}
				r = append(r, sport, orDash(strings.Join(a.SrcIP, ",")), orDash(strings.Join(a.DstIP, ",")))
			}
			t.row(r...)
		}
	})
}

func acrDelete(ctx context.Context, env *Env, args []string) error {
	var tid int
	c, pos, err := simple("acr delete", env, args, 1, func(fs *flag.FlagSet) { fs.IntVar(&tid, "tid", 0, "domain TID") })
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/domains/%d/acrs/%s", tid, pos[0]), nil, nil)
}

func apiCheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("check", env)
	c := addClientFlags(fs, env)
	pf := addPacketFlags(fs)
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	req, err := pf.request()
	if err != nil {
		return err
	}
	var v tenant.Verdict
	if err := c.do(ctx, "POST", fmt.Sprintf("/v1/domains/%d/check", *pf.tid), req, &v); err != nil {
		return err
	}
	if err := render(env, *out, v, func(*table) { printVerdict(env, "oracle", v.Action, v.Out, v.Rules, v.Reason) }); err != nil {
		return err
	}
	return verdictExit(v.Action)
}

func events(ctx context.Context, env *Env, args []string) error {
	var after int64
	var follow bool
	var limit int
	var since, kind, vm string
	c, _, format, err := readVerb("events", env, args, 0, func(fs *flag.FlagSet) {
		fs.Int64Var(&after, "after", 0, "only events after this id")
		fs.IntVar(&limit, "limit", 100, "at most this many, newest first (1..1000)")
		fs.StringVar(&since, "since", "", "only events since this RFC 3339 time or this long ago (e.g. 15m)")
		fs.StringVar(&kind, "kind", "", "only events of this kind (e.g. vmi.hidden_process, or vmi. for all of vmi)")
		fs.StringVar(&vm, "vm", "", "only events about this VM")
		fs.BoolVar(&follow, "follow", false, "keep streaming new events, oldest first (one JSON object per line)")
	})
	if err != nil {
		return err
	}
	if limit < 1 || limit > 1000 {
		return fmt.Errorf("--limit %d: want 1..1000", limit)
	}
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	for k, v := range map[string]string{"since": since, "kind": kind, "vm": vm} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if follow {
		q.Set("follow", "1")
		return c.stream(ctx, env, "/v1/events?"+q.Encode())
	}
	q.Set("limit", strconv.Itoa(limit))
	var out []store.Event
	if err := c.do(ctx, "GET", "/v1/events?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	return render(env, format, out, func(t *table) {
		head := []string{"ID", "TIME", "TENANT", "KIND", "SUBJECT"}
		if t.wide {
			head = append(head, "DETAIL")
		}
		t.row(head...)
		for _, e := range out {
			r := []string{strconv.FormatInt(e.ID, 10), e.Time.Format(time.RFC3339), orDash(e.Tenant), e.Kind, orDash(e.Subject)}
			if t.wide {
				d := e.Detail
				if len(d) > 120 {
					d = d[:117] + "..."
				}
				r = append(r, orDash(d))
			}
			t.row(r...)
		}
	})
}

func nadEnable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	var p tenant.NADPolicy
	c, _, err := simple("nad enable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.StringVar(&p.Window, "window", "60s", "window length")
		fs.IntVar(&p.History, "history", 120, "windows in the normal profile")
		fs.StringVar(&p.Detector, "detector", "normalized", "a registered detector (secaas nad detectors)")
		fs.StringVar(&p.Model, "model", "", "for lstm and lstm-unsup: a model file's name in the node's model directory (secaasd --nad-models)")
	})
	if err != nil {
		return err
	}
	return c.do(ctx, "PUT", fmt.Sprintf("/v1/domains/%d/vms/%s/nad", tid, vm), p, nil)
}

func nadDisable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	c, _, err := simple("nad disable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
	})
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/domains/%d/vms/%s/nad", tid, vm), nil, nil)
}
