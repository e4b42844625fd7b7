package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// groups describes the command groups.
var groups = map[string]string{
	"acl":       "offline policy tools: compile, check, trace, apply, migrate (no daemon)",
	"lab":       "the namespace lab, real attack traffic and QEMU test guests",
	"lab guest": "QEMU test guests: Debian's own kernel under KVM or TCG",
	"nad":       "network anomaly detection: features, detectors and scores on captures; live monitoring of a VM",
	"vmi":       "memory monitoring: processes, modules and hidden ones from guest memory",
	"av":        "HyperAV: scan and isolate files of VM disks from the host",
	"bench":     "benchmarks that print tables beside the papers' figures",
	"inventory": "the host inventory: switch ports leased to tenants, with their VMs' host resources",
	"tenant":    "tenants and their API tokens",
	"domain":    "tenant domains",
	"vm":        "a domain's VMs",
	"acr":       "a domain's access control rules",
}

const rootLong = `secaas: Security as a Service for KVM/QEMU virtual machines.

API commands talk to secaasd at --api (default $SECAAS_API, else
http://127.0.0.1:8470) with a token read, first found, from --token,
--token-file, $SECAAS_TOKEN or the file $SECAAS_TOKEN_FILE.

Read commands take -o table (default), wide, json or yaml; json and yaml
print the API's own documents.

Exit status: 0 done (a PASS or CLEAN verdict), 1 the command failed, 2 a bad
command line, 3 done with a DROP (acl check, acl trace, check) or INFECTED
(av scan) verdict.`

// newRoot builds the command tree from commands().
func newRoot(ctx context.Context, env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:           "secaas",
		Short:         "Security as a Service for KVM/QEMU virtual machines",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (secaas %s --help)", err, strings.TrimPrefix(cmd.CommandPath(), "secaas "))}
	})
	parents := map[string]*cobra.Command{"": root}
	var parent func(words []string) *cobra.Command
	parent = func(words []string) *cobra.Command {
		key := strings.Join(words, " ")
		if p, ok := parents[key]; ok {
			return p
		}
		up := parent(words[:len(words)-1])
		g := &cobra.Command{Use: words[len(words)-1], Short: groups[key], Args: noArgs,
			RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
		up.AddCommand(g)
		parents[key] = g
		return g
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		cmd := leaf(ctx, env, c)
		parent(words[:len(words)-1]).AddCommand(cmd)
	}
	sortCommands(root)
	return root
}

// noArgs refuses arguments where a group or the root expects a command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q (%s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())}
	}
	return nil
}

// leaf makes the cobra command of c: its flags come from a declaration
// pass over c.run (newFlags hands the flag set over, parse stops there).
func leaf(ctx context.Context, env *Env, c command) *cobra.Command {
	words := strings.Fields(c.name)
	use := words[len(words)-1]
	if c.args != "" {
		use += " " + c.args
	}
	var fs *flag.FlagSet
	denv := *env
	denv.declare = &fs
	if err := c.run(ctx, &denv, nil); !errors.Is(err, errDeclared) || fs == nil {
		panic(fmt.Sprintf("cli: %s declares its flags with newFlags and parse first (got %v)", c.name, err))
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   c.short,
		Example: indent(c.example),
		Args:    positional(c),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// cobra has checked names, types and required flags; the
			// command parses its own arguments (as given, after its words)
			// again into its variables.
			return c.run(cmd.Context(), env, env.args[min(len(words), len(env.args)):])
		},
	}
	// -o is --output's shorthand: only --output is shown and completed.
	fs.VisitAll(func(f *flag.Flag) {
		switch {
		case f.Name == "o" && fs.Lookup("output") != nil:
		case f.Name == "output":
			pf := pflag.PFlagFromGoFlag(f)
			pf.Shorthand = "o"
			cmd.Flags().AddFlag(pf)
		default:
			cmd.Flags().AddGoFlag(f)
		}
	})
	for _, r := range c.required {
		f := cmd.Flags().Lookup(r)
		if f == nil {
			panic(fmt.Sprintf("cli: %s requires --%s, which it does not declare", c.name, r))
		}
		f.Usage += " (required)"
	}
	return cmd
}

// positional checks, after the flags are parsed, that the required flags
// are set and the count of positional arguments matches the usage line;
// what it refuses is a usage error (exit 2).
func positional(c command) cobra.PositionalArgs {
	count := cobra.ExactArgs(len(strings.Fields(c.args)))
	switch {
	case strings.HasSuffix(c.args, "..."):
		count = cobra.MinimumNArgs(1)
	case c.args == "":
		count = cobra.NoArgs
	}
	return func(cmd *cobra.Command, args []string) error {
		var missing []string
		for _, r := range c.required {
			if !cmd.Flags().Changed(r) {
				missing = append(missing, "--"+r)
			}
		}
		if len(missing) > 0 {
			return usageError{fmt.Errorf("required flag(s) %s not set", strings.Join(missing, ", "))}
		}
		if err := count(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func sortCommands(c *cobra.Command) {
	cmds := c.Commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	for _, sub := range cmds {
		sortCommands(sub)
	}
}

// Version is this build's version: the module version and the VCS
// revision Go recorded, with "+dirty" for uncommitted changes.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v = fmt.Sprintf("%s (%s%s, %s)", v, rev, dirty, at)
	}
	return fmt.Sprintf("%s %s", v, bi.GoVersion)
}

func versionCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("version", env)
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo()
	doc := map[string]string{"version": Version()}
	if bi != nil {
		doc["go"] = bi.GoVersion
		doc["module"] = bi.Main.Version
		for _, s := range bi.Settings {
			if strings.HasPrefix(s.Key, "vcs.") {
				doc[s.Key] = s.Value
			}
		}
	}
	return render(env, *out, doc, func(w *table) { w.row("secaas " + doc["version"]) })
}
