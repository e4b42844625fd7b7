package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/capture"
	"secaas/internal/guestmem"
	"secaas/internal/linuxkern"
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
// for a VM when --vm is given. more adds a command's own flags and, after
// parsing, what they ask for to the indicators.
func vmiReport(ctx context.Context, name string, env *Env, args []string, ind map[string]bool, more ...func(*flag.FlagSet) func(map[string]bool, *vmi.Session) error) (*vmi.Report, string, error) {
	fs := newFlags(name, env)
	var after []func(map[string]bool, *vmi.Session) error
	for _, m := range more {
		after = append(after, m(fs))
	}
	c := addClientFlags(fs, env)
	ram := fs.String("ram", "", "guest RAM: the shared memory-backend-file of a running QEMU guest (e.g. /dev/shm/NAME)")
	image := fs.String("image", "", "a memory dump: ELF core (QMP dump-guest-memory), LiME or raw")
	vm := fs.String("vm", "", "a monitored VM: print the daemon's latest report")
	tid := fs.Int("tid", 0, "the VM's domain (with --vm)")
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return nil, "", err
	}
	local := vmi.NewSession(nil)
	for _, a := range after {
		if err := a(ind, local); err != nil {
			return nil, "", err
		}
	}
	if *vm != "" {
		if ind[vmi.Maps] || ind[vmi.Environ] || local.Image != nil {
			return nil, "", errors.New("memory maps, environments and the comparison with a kernel image are made from memory here (--ram or --image), not kept in the daemon's reports")
		}
		var r vmi.Report
		err := c.do(ctx, "GET", fmt.Sprintf("/v1/domains/%d/vms/%s/vmi/report", *tid, *vm), nil, &r)
		return &r, *out, err
	}
	m, err := vmiSource(*ram, *image)
	if err != nil {
		return nil, "", err
	}
	defer m.Close()
	local.Mem = m
	r, err := local.Inspect(ind)
	return r, *out, err
}

func vmiPS(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi ps", env, args, map[string]bool{vmi.Processes: true, vmi.HiddenProcesses: true},
		func(fs *flag.FlagSet) func(map[string]bool, *vmi.Session) error {
			e := fs.Bool("env", false, "read each process's environment too (values of names like *KEY*, *TOKEN*, *PASS* are redacted)")
			return func(ind map[string]bool, _ *vmi.Session) error { ind[vmi.Environ] = *e; return nil }
		})
	if err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, r, nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tPPID\tUID\tSTART\tCOMM\tEXE\tSTATUS\tCMDLINE\n")
	for _, p := range r.Processes {
		exe := p.Exe
		if p.Kernel {
			exe = "[kernel thread]"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.PID, p.PPID, p.UID, startTime(p.Start), p.Comm, exe, "listed", cmdline(p.Cmdline))
		for _, e := range p.Env {
			fmt.Fprintf(tw, "\t\t\t\t\t\t\t  %s\n", e)
		}
	}
	for _, c := range r.HiddenProcesses {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\tHIDDEN: %s\t%s\n", c.PID, c.PPID, c.UID, startTime(c.Start), c.Comm, c.Exe, strings.Join(c.Evidence, "; "), cmdline(c.Cmdline))
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

// cmdline prints a command line the way ps does, cut to a line's width.
func cmdline(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// held marks rows of processes hidden from the task list.
func held(hidden bool) string {
	if hidden {
		return "  HIDDEN PROCESS"
	}
	return ""
}

func vmiFiles(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi files", env, args, map[string]bool{vmi.HiddenProcesses: true, vmi.Files: true})
	if err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, nonNil(r.Files), nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tCOMM\tFD\tTYPE\tINODE\tPATH\n")
	for _, f := range r.Files {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s%s\n", f.PID, f.Comm, f.FD, f.Type, f.Inode, f.Path, held(f.HiddenProcess))
	}
	tw.Flush()
	summary(env.Stderr, r)
	fmt.Fprintf(env.Stderr, "%d open files\n", len(r.Files))
	return partial(r)
}

func vmiSockets(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi sockets", env, args, map[string]bool{vmi.HiddenProcesses: true, vmi.Sockets: true})
	if err != nil {
		return err
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, nonNil(r.Sockets), nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tCOMM\tFD\tPROTO\tSTATE\tLOCAL\tREMOTE\n")
	for _, s := range r.Sockets {
		local, remote := s.Path, ""
		if s.Family == "inet" || s.Family == "inet6" {
			local = net.JoinHostPort(s.LocalAddr, fmt.Sprint(s.LocalPort))
			remote = net.JoinHostPort(s.RemoteAddr, fmt.Sprint(s.RemotePort))
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s%s\n", s.PID, s.Comm, s.FD, s.Proto+"/"+s.Type, s.State, local, remote, held(s.HiddenProcess))
	}
	tw.Flush()
	summary(env.Stderr, r)
	fmt.Fprintf(env.Stderr, "%d sockets\n", len(r.Sockets))
	return partial(r)
}

func vmiMaps(ctx context.Context, env *Env, args []string) error {
	var pid *int
	r, format, err := vmiReport(ctx, "vmi maps", env, args, map[string]bool{vmi.HiddenProcesses: true, vmi.Maps: true},
		func(fs *flag.FlagSet) func(map[string]bool, *vmi.Session) error {
			pid = fs.Int("pid", 0, "only this process")
			return func(map[string]bool, *vmi.Session) error { return nil }
		})
	if err != nil {
		return err
	}
	maps := []linuxkern.Map{}
	for _, m := range r.Maps {
		if *pid == 0 || int(m.PID) == *pid {
			maps = append(maps, m)
		}
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, maps, nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tCOMM\tRANGE\tPERMS\tOFFSET\tPATH\n")
	for _, m := range maps {
		fmt.Fprintf(tw, "%d\t%s\t%08x-%08x\t%s\t%08x\t%s%s\n", m.PID, m.Comm, m.Start, m.End, m.Perms, m.Offset, m.Path, held(m.HiddenProcess))
	}
	tw.Flush()
	summary(env.Stderr, r)
	fmt.Fprintf(env.Stderr, "%d mappings\n", len(maps))
	return partial(r)
}

func vmiIntegrity(ctx context.Context, env *Env, args []string) error {
	r, format, err := vmiReport(ctx, "vmi integrity", env, args, map[string]bool{vmi.HiddenModules: true, vmi.Integrity: true,
		vmi.HiddenProcesses: true, vmi.Sockets: true},
		func(fs *flag.FlagSet) func(map[string]bool, *vmi.Session) error {
			image := fs.String("kernel-image", "", "the guest's own kernel image (its vmlinuz): compare the kernel's code and syscall table with it")
			return func(_ map[string]bool, s *vmi.Session) error {
				if *image == "" {
					return nil
				}
				b, err := os.ReadFile(*image)
				if err != nil {
					return err
				}
				s.Image, err = linuxkern.LoadImage(b)
				return err
			}
		})
	if err != nil {
		return err
	}
	if r.Integrity == nil {
		return partial(r)
	}
	if format == FormatJSON || format == FormatYAML {
		return render(env, format, struct {
			*linuxkern.Integrity
			HiddenSockets []vmi.HiddenSocket `json:"hidden_sockets"`
		}{r.Integrity, nonNil(r.HiddenSockets)}, nil)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SEVERITY\tKIND\tTARGET\tSITE\tTO\tOWNER\tEVIDENCE\n")
	for _, f := range r.Integrity.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%#x\t%#x\t%s\t%s\n", f.Severity, f.Kind, f.Target, f.Site, f.Addr, f.Owner, f.Evidence)
	}
	tw.Flush()
	for _, h := range r.HiddenSockets {
		fmt.Fprintf(env.Stdout, "socket %s %s:%d (pid %d %s) can be hidden: %s\n", h.Proto, h.LocalAddr, h.LocalPort, h.PID, h.Comm, h.Evidence)
	}
	summary(env.Stderr, r)
	keys := make([]string, 0, len(r.Integrity.Checked))
	for k := range r.Integrity.Checked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var checked []string
	for _, k := range keys {
		checked = append(checked, fmt.Sprintf("%d %s", r.Integrity.Checked[k], k))
	}
	fmt.Fprintf(env.Stderr, "checked %s: %d findings\n", strings.Join(checked, ", "), len(r.Integrity.Findings))
	return partial(r)
}

func vmiCrossView(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("vmi crossview", env)
	ram := fs.String("ram", "", "guest RAM: the shared memory-backend-file of a running QEMU guest")
	iface := fs.String("iface", "", "the interface carrying the VM's traffic (its tap, or a mirror port)")
	ip := fs.String("ip", "", "the VM's address (default: any source on the interface)")
	seconds := fs.Duration("for", 20*time.Second, "how long to watch (a port must answer before and after a listing)")
	out := addOutput(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ram == "" || *iface == "" {
		return errors.New("give --ram FILE and --iface IF")
	}
	var addr netip.Addr
	if *ip != "" {
		var err error
		if addr, err = netip.ParseAddr(*ip); err != nil {
			return fmt.Errorf("--ip: %w", err)
		}
	}
	answers := vmi.NewResponses(addr)
	live, err := capture.OpenLive(*iface)
	if err != nil {
		return err
	}
	defer live.Close()
	go answers.Feed(live)
	wctx, cancel := context.WithTimeout(ctx, *seconds)
	defer cancel()
	found := []vmi.UnownedTraffic{}
	cycles, t0 := 0, time.Now()
	vmi.Watch(wctx, vmi.WatchConfig{Memory: *ram, Interval: time.Second, Indicators: map[string]bool{vmi.Sockets: true}, Traffic: answers},
		func(kind string, v any) {
			switch kind {
			case vmi.EventReport:
				cycles++
				fmt.Fprintf(env.Stderr, "\r%s of %s: %d listings", time.Since(t0).Round(time.Second), *seconds, cycles)
			case vmi.EventUnowned:
				found = append(found, v.(vmi.UnownedTraffic))
			case vmi.EventError:
				fmt.Fprintf(env.Stderr, "\n%v\n", v)
			}
		})
	fmt.Fprintln(env.Stderr)
	if *out == FormatJSON || *out == FormatYAML {
		return render(env, *out, found, nil)
	}
	for _, u := range found {
		fmt.Fprintf(env.Stdout, "UNOWNED %s %s:%d: %s\n", u.Proto, u.Addr, u.Port, u.Evidence)
	}
	fmt.Fprintf(env.Stderr, "%d ports answering now; %d answered with no socket to own them\n", len(answers.Answering(time.Now().Add(-5*time.Second), 5*time.Second)), len(found))
	return nil
}

// nonNil makes an empty listing print as [] in JSON, not null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
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
		fs.StringVar(&ind, "indicators", "", "comma-separated: processes,hidden_processes,modules,hidden_modules,files,sockets,integrity (default all)")
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
