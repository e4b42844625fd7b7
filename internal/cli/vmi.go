package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/tenant"
	"secaas/internal/vmi"
)

// vmiSource opens the memory named by --ram (a running guest's RAM file)
// or --image (a dump: ELF core, LiME or raw).
func vmiSource(ram, image string) (*guestmem.Mem, error) {
	switch {
	case ram != "" && image != "":
		return nil, errors.New("give --ram or --image, not both")
	case ram != "":
		return guestmem.OpenShared(ram)
	case image != "":
		return guestmem.Open(image)
	}
	return nil, errors.New("give --ram FILE (a running guest), --image DUMP (offline) or --vm NAME --tid N (the daemon's latest report)")
}

// vmiReport inspects local memory, or fetches the daemon's latest report
// for a VM when --vm is given.
func vmiReport(ctx context.Context, name string, env *Env, args []string, ind map[string]bool) (*vmi.Report, string, error) {
	fs := newFlags(name, env)
	c := addClientFlags(fs, env)
	ram := fs.String("ram", "", "guest RAM: the shared memory-backend-file of a running QEMU guest (e.g. /dev/shm/NAME)")
	image := fs.String("image", "", "a memory dump: ELF core (QMP dump-guest-memory), LiME or raw")
	vm := fs.String("vm", "", "a monitored VM: print the daemon's latest report")
	tid := fs.Int("tid", 0, "the VM's domain (with --vm)")
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return nil, "", err
	}
	if *vm != "" {
		var r vmi.Report
		err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d/vms/%s/vmi/report", *tid, *vm), nil, &r)
		return &r, *out, err
	}
	m, err := vmiSource(*ram, *image)
	if err != nil {
		return nil, "", err
	}
	defer m.Close()
	r, err := vmi.NewSession(m).Inspect(ind)
	return r, *out, err
}

func vmiPS(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi ps", env, args, map[string]bool{vmi.Processes: true, vmi.HiddenProcesses: true})
	if err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, r, nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tPPID\tUID\tSTART\tCOMM\tEXE\tSTATUS\n")
	for _, p := range r.Processes {
		exe := p.Exe
		if p.Kernel {
			exe = "[kernel thread]"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\n", p.PID, p.PPID, p.UID, startTime(p.Start), p.Comm, exe, "listed")
	}
	for _, c := range r.HiddenProcesses {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\tHIDDEN: %s\n", c.PID, c.PPID, c.UID, startTime(c.Start), c.Comm, c.Exe, strings.Join(c.Evidence, "; "))
	}
	tw.Flush()
	summary(env.Stderr, r)
	fmt.Fprintf(env.Stderr, "%d processes listed, %d hidden\n", len(r.Processes), len(r.HiddenProcesses))
	return partial(r)
}

func vmiModules(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi modules", env, args, map[string]bool{vmi.Modules: true, vmi.HiddenModules: true})
	if err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, r, nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "NAME\tSTATE\tBASE\tSIZE\tSTATUS\n")
	for _, m := range r.Modules {
		fmt.Fprintf(tw, "%s\t%s\t%#x\t%d\tlisted\n", m.Name, m.State, m.Base, m.Size)
	}
	for _, c := range r.HiddenModules {
		fmt.Fprintf(tw, "%s\t%s\t%#x\t%d\tHIDDEN: %s\n", c.Name, c.State, c.Base, c.Size, strings.Join(c.Evidence, "; "))
	}
	tw.Flush()
	summary(env.Stderr, r)
	fmt.Fprintf(env.Stderr, "%d modules listed, %d hidden\n", len(r.Modules), len(r.HiddenModules))
	return partial(r)
}

func startTime(ns uint64) string {
	return (time.Duration(ns) / time.Millisecond * time.Millisecond).String()
}

func summary(w io.Writer, r *vmi.Report) {
	fmt.Fprintf(w, "kernel %s, %s memory %d MiB, %d-level paging, %.0f ms\n", r.Kernel, r.Source, r.RAM>>20, r.PagingLevels, r.TookMS)
}

func partial(r *vmi.Report) error {
	if len(r.Partial) > 0 {
		return fmt.Errorf("partial result: %s", strings.Join(r.Partial, "; "))
	}
	return nil
}

func vmiEnable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm, ind string
	var p tenant.VMIPolicy
	c, _, err := simple("vmi enable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
		fs.StringVar(&p.Interval, "interval", "10s", "time between cycles")
		fs.StringVar(&ind, "indicators", "", "comma-separated: processes,hidden_processes,modules,hidden_modules (default all)")
	})
	if err != nil {
		return err
	}
	if ind != "" {
		p.Indicators = strings.Split(ind, ",")
	}
	return c.do(ctx, "PUT", fmt.Sprintf("/v1/domains/%d/vms/%s/vmi", tid, vm), p, nil)
}

func vmiDisable(ctx context.Context, env *Env, args []string) error {
	var tid int
	var vm string
	c, _, err := simple("vmi disable", env, args, 0, func(fs *flag.FlagSet) {
		fs.IntVar(&tid, "tid", 0, "domain TID")
		fs.StringVar(&vm, "vm", "", "VM name")
	})
	if err != nil {
		return err
	}
	return c.do(ctx, "DELETE", fmt.Sprintf("/v1/domains/%d/vms/%s/vmi", tid, vm), nil, nil)
}
