package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/lab"
	"secaas/internal/linuxkern"
	"secaas/internal/vmi"
)

// VMIRow is one guest size of secaas bench vmi.
type VMIRow struct {
	MiB        int
	Recover    time.Duration // VMCOREINFO + kallsyms + BTF + layout
	List       time.Duration // init_task.tasks walk
	Scan       time.Duration // fingerprint scan of all RAM + comparison
	Cycle      time.Duration // list + scan: the paper's cycle (processes only)
	Full       time.Duration // vmi.Session.Inspect, every indicator: processes with details, both scans, modules, files, sockets, integrity
	Tasks      int
	Candidates int
	Accel      string // the accelerator the guest ran on, and why
}

// RunVMI boots a guest per size and times a monitoring cycle (median of 5).
func RunVMI(ctx context.Context, repoRoot string, sizes []int, progress io.Writer) ([]VMIRow, error) {
	kernel, err := lab.FindKernel(repoRoot)
	if err != nil {
		return nil, err
	}
	var rows []VMIRow
	for _, mib := range sizes {
		fmt.Fprintf(progress, "vmi: booting a %d MiB guest\n", mib)
		dir, err := os.MkdirTemp("", "secaas-bench-vmi")
		if err != nil {
			return nil, err
		}
		g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: fmt.Sprintf("secaas-bench-%d", mib), Kernel: kernel, MemMiB: mib, Dir: dir})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		row, err := timeVMI(g, mib)
		row.Accel = g.Accel.String()
		g.Stop()
		os.RemoveAll(dir)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func timeVMI(g *lab.Guest, mib int) (VMIRow, error) {
	row := VMIRow{MiB: mib}
	m, err := guestmem.OpenShared(g.RAMFile)
	if err != nil {
		return row, err
	}
	defer m.Close()
	t0 := time.Now()
	k, err := linuxkern.Open(m, m.Size())
	if err != nil {
		return row, err
	}
	row.Recover = time.Since(t0)
	var lists, scans, cycles []time.Duration
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		ps, err := k.ListProcesses()
		if err != nil {
			return row, err
		}
		t1 := time.Now()
		cands, _, err := k.ScanTasks(m.Size(), ps)
		if err != nil {
			return row, err
		}
		t2 := time.Now()
		lists, scans, cycles = append(lists, t1.Sub(t0)), append(scans, t2.Sub(t1)), append(cycles, t2.Sub(t0))
		row.Tasks, row.Candidates = len(ps), len(cands)
	}
	sess := vmi.NewSession(m)
	var fulls []time.Duration
	for i := 0; i < 5; i++ {
		r, err := sess.Inspect(vmi.AllIndicators)
		if err != nil {
			return row, err
		}
		if len(r.Partial) > 0 {
			return row, fmt.Errorf("partial cycle: %v", r.Partial)
		}
		fulls = append(fulls, time.Duration(r.TookMS*float64(time.Millisecond)))
	}
	row.List, row.Scan, row.Cycle, row.Full = median(lists), median(scans), median(cycles), median(fulls)
	return row, nil
}

// WriteVMI prints the table with the paper's figure beside.
func WriteVMI(w io.Writer, rows []VMIRow) {
	fmt.Fprintf(w, "### Memory monitoring cycle (secaas bench vmi)\n\nQEMU guest, accelerator %s; Debian kernel, RAM mapped from the host; median of 5 cycles; one core.\n\n",
		accels(rows, func(r VMIRow) string { return r.Accel }))
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| guest RAM\t recover kernel (once)\t list walk\t task scan\t process cycle\t s per GiB\t paper (Table 6)\t goal\t full cycle (processes, modules, files, sockets, integrity)\t s per GiB\t goal\t tasks\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rows {
		gib := float64(r.MiB) / 1024
		fmt.Fprintf(tw, "| %d MiB\t %s\t %s\t %s\t %s\t %.3f\t 0.29 s per cycle\t <= 0.2 s per GB\t %s\t %.3f\t <= 0.1 s per GiB\t %d\t\n", r.MiB,
			r.Recover.Round(time.Millisecond), r.List.Round(time.Microsecond), r.Scan.Round(time.Millisecond), r.Cycle.Round(time.Millisecond),
			r.Cycle.Seconds()/gib, r.Full.Round(time.Millisecond), r.Full.Seconds()/gib, r.Tasks)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nVolatility 3 (linux.lsof, linux.sockstat) is not beside these: neither it nor dwarf2json, which makes its symbol file, is packaged for Debian 12, and this machine reaches no other package source.\n")
}

// accels names the accelerators the rows' guests ran on.
func accels[R any](rows []R, of func(R) string) string {
	var out []string
	for _, r := range rows {
		if a := of(r); a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return "unknown"
	}
	return strings.Join(out, "; ")
}
