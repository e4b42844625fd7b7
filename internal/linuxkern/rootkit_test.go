package linuxkern_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// TestRootkitHiddenProcess loads a real DKOM rootkit (secaas_dkom.ko, built
// against Debian's headers for each kernel flavour) into a running guest.
// It hides one process from ps inside the guest, and itself from lsmod;
// secaas, reading the guest's RAM from the host with no symbol file,
// reports exactly that process and that module as hidden, and nothing
// else. The same code runs on every flavour: no per-build tuning. The
// first flavour boots on QEMU's "max" CPU, whose LA57 gives the guest
// 5-level page tables; the others use 4 levels.
func TestRootkitHiddenProcess(t *testing.T) {
	for i, k := range kernels(t) {
		t.Run(k.Version, func(t *testing.T) {
			if k.Rootkit == "" {
				labtest.Missing(t, "no test rootkit for "+k.Version+": run scripts/guest-kernel.sh")
			}
			mods := filepath.Join(filepath.Dir(k.Vmlinuz), "root", "lib", "modules", k.Version, "kernel", "lib")
			cfg := lab.GuestConfig{Files: map[string]string{"/secaas_dkom.ko": k.Rootkit,
				"/crc7.ko": filepath.Join(mods, "crc7.ko"), "/crc-itu-t.ko": filepath.Join(mods, "crc-itu-t.ko")}}
			wantLevels := 4
			if i == 0 {
				cfg.CPU, wantLevels = "max", 5
			}
			g := bootKernel(t, fmt.Sprintf("secaas-test-rk%d", i), k, cfg)
			if out, err := g.Run("insmod /crc7.ko && insmod /crc-itu-t.ko; echo rc=$?", 30*time.Second); err != nil || !strings.Contains(out, "rc=0") {
				t.Fatalf("insmod: %v: %s", err, out)
			}
			if _, err := g.Run("for i in $(seq 1 50); do /bin/true; done", 120*time.Second); err != nil {
				t.Fatal(err)
			}
			out, err := g.Run("sleep 4242 </dev/null >/dev/null & echo $!", 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var victim int32
			if _, err := fmt.Sscan(strings.TrimSpace(out), &victim); err != nil {
				t.Fatalf("pid %q: %v", out, err)
			}
			if _, err := g.Run("sleep 4343 </dev/null >/dev/null &", 30*time.Second); err != nil {
				t.Fatal(err)
			}
			out, err = g.Run(fmt.Sprintf("insmod /secaas_dkom.ko pid=%d hide_module=1; echo rc=$?", victim), 30*time.Second)
			if err != nil || !strings.Contains(out, "rc=0") {
				t.Fatalf("insmod: %v: %s", err, out)
			}
			// Inside the guest the process is gone from ps and /proc, and the
			// module from lsmod.
			ps, _ := g.Run("ps", 30*time.Second)
			if strings.Contains(ps, "sleep 4242") || !strings.Contains(ps, "sleep 4343") {
				t.Fatalf("the rootkit did not hide the process from ps:\n%s", ps)
			}
			if mods, _ := g.Run("cat /proc/modules", 30*time.Second); strings.Contains(mods, "secaas_dkom") {
				t.Fatalf("the rootkit did not hide itself: %s", mods)
			}

			m := openRAM(t, g)
			kern, err := linuxkern.Open(m, m.Size())
			if err != nil {
				t.Fatal(err)
			}
			if kern.Info.OSRelease != k.Version {
				t.Errorf("OSRELEASE %q, want %q", kern.Info.OSRelease, k.Version)
			}
			if kern.Levels != wantLevels {
				t.Errorf("%d-level paging, want %d", kern.Levels, wantLevels)
			}
			listed, err := kern.ListProcesses()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range listed {
				if p.PID == victim {
					t.Fatalf("the hidden pid %d is on the task list", victim)
				}
			}
			cands, st, err := kern.ScanTasks(m.Size(), listed)
			if err != nil {
				t.Fatal(err)
			}
			var hidden []linuxkern.Candidate
			for _, c := range cands {
				if c.Status == "hidden" {
					hidden = append(hidden, c)
				}
			}
			t.Logf("%s: %d listed, %d candidates, hidden %+v", k.Version, len(listed), st.Candidates, hidden)
			if len(hidden) != 1 || hidden[0].PID != victim || hidden[0].Comm != "sleep" {
				t.Fatalf("hidden = %+v, want exactly pid %d (sleep)", hidden, victim)
			}
			if ev := strings.Join(hidden[0].Evidence, "; "); !strings.Contains(ev, "not on the task list") || !strings.Contains(ev, "no task attached") {
				t.Errorf("evidence %q: want the task list and the detached pid", ev)
			}

			// Modules: the list matches the guest's own /proc/modules taken
			// before the rootkit loaded (crc7, crc_itu_t), and the scan finds
			// the rootkit as the one hidden module.
			listedMods, err := kern.ListModules()
			if err != nil {
				t.Fatal(err)
			}
			names := map[string]bool{}
			for _, m := range listedMods {
				names[m.Name] = true
				if m.State != "live" || m.Base < linuxkern.ModuleBase || m.Size == 0 {
					t.Errorf("module %+v", m)
				}
			}
			if len(listedMods) != 2 || !names["crc7"] || !names["crc_itu_t"] {
				t.Errorf("module list %+v, want crc7 and crc_itu_t", listedMods)
			}
			mcands, mst, err := kern.ScanModules(m.Size(), listedMods)
			if err != nil {
				t.Fatal(err)
			}
			var hiddenMods []string
			found := 0
			for _, c := range mcands {
				switch c.Status {
				case "hidden":
					hiddenMods = append(hiddenMods, c.Name)
				case "listed":
					found++
				}
			}
			t.Logf("modules: listed %v; scan: %d positions, %+v", names, mst.Positions, mcands)
			if found != len(listedMods) {
				t.Errorf("the module scan found %d of %d listed modules", found, len(listedMods))
			}
			if len(hiddenMods) != 1 || hiddenMods[0] != "secaas_dkom" {
				t.Errorf("hidden modules %v, want [secaas_dkom]", hiddenMods)
			}
		})
	}
}
