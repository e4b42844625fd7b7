package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"secaas/internal/controller"
	"secaas/internal/tenant"
)

// readPolicy reads a policy file, or standard input for "-", and
// validates it on its own.
func readPolicy(env *Env, file string) (*tenant.Policy, error) {
	if err := mustFile(file); err != nil {
		return nil, err
	}
	var b []byte
	var err error
	if file == "-" {
		if env.Stdin == nil {
			return nil, errors.New("-f -: no standard input")
		}
		b, err = io.ReadAll(io.LimitReader(env.Stdin, tenant.MaxPolicyBytes+1))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	p, err := tenant.ParsePolicy(b)
	if err != nil {
		return nil, err
	}
	if _, err := tenant.NewNet(p.Domains); err != nil {
		return nil, err
	}
	for _, d := range p.Domains {
		if err := tenant.CheckAddressing(d); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// loadNet reads and validates a policy file ("-": standard input).
func loadNet(env *Env, file string) (*tenant.Policy, *tenant.Net, error) {
	p, err := readPolicy(env, file)
	if err != nil {
		return nil, nil, err
	}
	n, err := tenant.NewNet(p.Domains)
	return p, n, err
}

// applyCmd makes the daemon's domains what a policy file says: all or
// nothing, idempotent (a second run changes nothing and says so).
func applyCmd(ctx context.Context, env *Env, args []string) error {
	var file, as string
	var dry, diff bool
	c, _, err := simple("apply", env, args, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "policy file (YAML or JSON; - reads standard input)")
		fs.StringVar(&as, "tenant", "", "tenant to own the domains (admin token; default: the file's)")
		fs.BoolVar(&dry, "dry-run", false, "change nothing; say what would change")
		fs.BoolVar(&diff, "diff", false, "also show the changes: the domains' documents and the switch's flows")
	})
	if err != nil {
		return err
	}
	p, err := readPolicy(env, file)
	if err != nil {
		return err
	}
	if as != "" {
		for i := range p.Domains {
			p.Domains[i].Tenant = as
		}
	}
	path := "/v1/apply"
	if dry {
		path += "?dry_run=1"
	}
	var plan controller.ApplyPlan
	if err := c.do(ctx, "POST", path, p, &plan); err != nil {
		return err
	}
	verb := map[bool]string{false: "", true: " (dry run: nothing changed)"}[dry]
	for _, d := range plan.Domains {
		fmt.Fprintf(env.Stdout, "domain %d (%s): %s%s\n", d.TID, d.Name, d.Action, verb)
		if diff && d.Action != "unchanged" {
			writeDiff(env.Stdout, docLines(d.Before), docLines(d.After))
		}
	}
	if diff && len(plan.FlowsUnplanned) > 0 {
		fmt.Fprintf(env.Stdout, "switch: no answer from host %s: its flows are not shown\n", strings.Join(plan.FlowsUnplanned, ", "))
	}
	if diff && (plan.FlowsPlanned || len(plan.FlowsUnplanned) > 0) {
		fmt.Fprintf(env.Stdout, "switch: %d flows removed, %d added\n", len(plan.FlowsRemoved), len(plan.FlowsAdded))
		for _, l := range plan.FlowsRemoved {
			fmt.Fprintln(env.Stdout, "- "+l)
		}
		for _, l := range plan.FlowsAdded {
			fmt.Fprintln(env.Stdout, "+ "+l)
		}
	}
	if !plan.Changed {
		fmt.Fprintln(env.Stdout, "no change")
	}
	return nil
}

// docLines is a domain as YAML lines (none for nil), without the fields
// the store fills in.
func docLines(d *tenant.Domain) []string {
	if d == nil {
		return nil
	}
	x := *d
	x.Revision = 0
	b, err := yaml.Marshal(x)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// writeDiff prints the lines that go ("- ") and come ("+ "), in order,
// from a longest common subsequence (a set difference for very long
// documents).
func writeDiff(w io.Writer, a, b []string) {
	if len(a)*len(b) > 4_000_000 {
		have := map[string]int{}
		for _, l := range a {
			have[l]++
		}
		for _, l := range b {
			have[l]--
		}
		for _, l := range a {
			if have[l] > 0 {
				fmt.Fprintln(w, "  - "+l)
				have[l]--
			}
		}
		for _, l := range b {
			if have[l] < 0 {
				fmt.Fprintln(w, "  + "+l)
				have[l]++
			}
		}
		return
	}
	// lcs[i][j]: length of the LCS of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			i, j = i+1, j+1
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintln(w, "  + "+b[j])
			j++
		default:
			fmt.Fprintln(w, "  - "+a[i])
			i++
		}
	}
}
