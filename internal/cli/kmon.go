package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"secaas/internal/elfreloc"
	"secaas/internal/kmon"
	"secaas/internal/tenant"
)

// kmonRelocate relocates a monitoring object offline, for scripts and
// for comparison with other linkers.
func kmonRelocate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("kmon relocate", env)
	object := fs.String("object", "", "the ELF relocatable object (x86-64, built for the kernel code model)")
	baseText := fs.String("base", "", "the address of the first section, hexadecimal (e.g. 0xffffffffc0000000)")
	symbols := fs.String("symbols", "", "the target's symbols in nm format (ADDR TYPE NAME per line, as /proc/kallsyms prints)")
	out := fs.String("out", "", "directory for SECTION.bin files and layout.json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	base, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(*baseText), "0x"), 16, 64)
	if err != nil {
		return usageError{fmt.Errorf("--base %q: a hexadecimal address", *baseText)}
	}
	obj, err := os.ReadFile(*object)
	if err != nil {
		return err
	}
	sf, err := os.Open(*symbols)
	if err != nil {
		return err
	}
	syms, err := elfreloc.ParseSymbols(sf)
	sf.Close()
	if err != nil {
		return err
	}
	im, err := elfreloc.Relocate(obj, base, syms)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, s := range im.Sections {
		// Section names become file names: keep them to one path element.
		name := strings.NewReplacer("/", "_", "\x00", "_").Replace(s.Name)
		if name == "" || name == "." || name == ".." {
			return fmt.Errorf("section name %q cannot be a file name", s.Name)
		}
		if err := os.WriteFile(filepath.Join(*out, name+".bin"), s.Data, 0o644); err != nil {
			return err
		}
	}
	layout, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "layout.json"), append(layout, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%d sections, %d bytes from %#x, %d global symbols; written to %s\n", len(im.Sections), im.Size, im.Base, len(im.Symbols), *out)
	return nil
}

// kmonBuild compiles the syscall monitor that agents inject (secaasd
// --kmon-object), with gcc for the kernel code model.
func kmonBuild(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("kmon build", env)
	out := fs.String("out", "", "the object file to write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	return kmon.Build(ctx, *out)
}

// kmonRules reads a VM's syscall monitoring rules (none: off) from the
// daemon.
func kmonRules(ctx context.Context, c *client, tid int, vm string) ([]tenant.KMonRule, error) {
	var d tenant.Domain
	if err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d", tid), nil, &d); err != nil {
		return nil, err
	}
	for _, s := range d.Subnets {
		for _, v := range s.VMs {
			if v.Name != vm {
				continue
			}
			if v.KMon == nil {
				return nil, nil
			}
			return v.KMon.Rules, nil
		}
	}
	return nil, fmt.Errorf("domain %d has no vm %q", tid, vm)
}

// kmonPut sets a VM's rules, or clears its policy when there are none.
func kmonPut(ctx context.Context, c *client, tid int, vm string, rules []tenant.KMonRule) error {
	path := fmt.Sprintf("/v1/domains/%d/vms/%s/kmon", tid, vm)
	if len(rules) == 0 {
		return c.do(ctx, "DELETE", path, nil, nil)
	}
	return c.do(ctx, "PUT", path, tenant.KMonPolicy{Rules: rules}, nil)
}

// parseSyscalls reads "0,1,2,3" or "0-3,257".
func parseSyscalls(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("syscall %q is not a number or a range", f)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > tenant.MaxKMonSyscall {
				return nil, fmt.Errorf("syscall range %q", f)
			}
		}
		for n := a; n <= b; n++ {
			out = append(out, n)
		}
	}
	return out, nil
}

func kmonPolicyAdd(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm, syscalls string
	var r tenant.KMonRule
	c, _, err := simple("kmon policy add", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.StringVar(&syscalls, "syscalls", "", "x86-64 syscall numbers, e.g. 0,1,2,3 or 0-3,257")
		fs.StringVar(&r.Subject, "subject", "", "the process name (comm) the rule applies to")
		fs.StringVar(&r.Object, "object", "", "the file of open and openat (an absolute path; empty: any)")
		fs.StringVar(&r.Action, "action", "record", "record (an event) or block (EPERM in the guest, and an event)")
	})
	if err != nil {
		return err
	}
	if r.Syscalls, err = parseSyscalls(syscalls); err != nil {
		return err
	}
	rules, err := kmonRules(ctx, c, tid, vm)
	if err != nil {
		return err
	}
	return kmonPut(ctx, c, tid, vm, append(rules, r))
}

func kmonPolicyRm(ctx context.Context, env *Env, args []string) error {
	var tid, rule int
	var vm string
	var all bool
	c, _, err := simple("kmon policy rm", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.IntVar(&rule, "rule", -1, "the rule's index (secaas kmon policy list)")
		fs.BoolVar(&all, "all", false, "every rule: syscall monitoring of the VM stops")
	})
	if err != nil {
		return err
	}
	if all == (rule >= 0) {
		return fmt.Errorf("give --rule N or --all")
	}
	if all {
		return kmonPut(ctx, c, tid, vm, nil)
	}
	rules, err := kmonRules(ctx, c, tid, vm)
	if err != nil {
		return err
	}
	if rule >= len(rules) {
		return fmt.Errorf("vm %q has no rule %d", vm, rule)
	}
	return kmonPut(ctx, c, tid, vm, slices.Delete(rules, rule, rule+1))
}

func kmonPolicyList(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	c, _, format, err := readVerb("kmon policy list", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
	})
	if err != nil {
		return err
	}
	rules, err := kmonRules(ctx, c, tid, vm)
	if err != nil {
		return err
	}
	return render(env, format, rules, func(t *table) {
		t.row("RULE", "SYSCALLS", "SUBJECT", "OBJECT", "ACTION")
		for i, r := range rules {
			ns := make([]string, len(r.Syscalls))
			for k, n := range r.Syscalls {
				ns[k] = strconv.Itoa(n)
			}
			t.row(strconv.Itoa(i), strings.Join(ns, ","), r.Subject, orDash(r.Object), r.Action)
		}
	})
}

// kmonEvents is secaas events for one VM's syscall monitoring.
func kmonEvents(ctx context.Context, env *Env, args []string) error {
	return events(ctx, env, append([]string{"--kind", "kmon."}, args...))
}
