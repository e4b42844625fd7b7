package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"secaas/internal/guestmem"
	"secaas/internal/linuxkern"
)

func vmiPS(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("vmi ps", env)
	ram := fs.String("ram", "", "guest RAM: the shared memory-backend-file of a running QEMU guest (e.g. /dev/shm/NAME)")
	asJSON := fs.Bool("json", false, "JSON output")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ram == "" {
		return fmt.Errorf("--ram is required")
	}
	m, err := guestmem.OpenShared(*ram)
	if err != nil {
		return err
	}
	defer m.Close()
	k, err := linuxkern.Open(m, m.Size())
	if err != nil {
		return err
	}
	ps, err := k.ListProcesses()
	if err != nil && len(ps) == 0 {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, map[string]any{"kernel": k.Info.OSRelease, "processes": ps, "partial": err != nil})
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tPPID\tCOMM\tKIND\tTASK\n")
	for _, p := range ps {
		kind := "user"
		if p.Kernel {
			kind = "kthread"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%#x\n", p.PID, p.PPID, p.Comm, kind, p.Task)
	}
	tw.Flush()
	fmt.Fprintf(env.Stderr, "kernel %s (KASLR offset %#x), %d tasks from init_task.tasks\n", k.Info.OSRelease, k.Info.KernelOffset, len(ps))
	if err != nil {
		return fmt.Errorf("partial list: %w", err)
	}
	return nil
}
