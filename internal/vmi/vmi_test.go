package vmi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
	"secaas/internal/vmi"
)

// TestWatchLiveGuest monitors a running guest every 300 ms while it starts
// and reaps processes non-stop (tasks born between the list walk and the
// scan): no hidden-process alarm may fire. Then a DKOM rootkit hides one
// process and itself: exactly one alarm for each, once.
func TestWatchLiveGuest(t *testing.T) {
	k := testKernel(t)
	if k.Rootkit == "" {
		labtest.Missing(t, "no test rootkit: run scripts/guest-kernel.sh")
	}
	g := startGuest(t, k, lab.GuestConfig{Name: "secaas-test-vmiw", Files: map[string]string{"/secaas_dkom.ko": k.Rootkit}})
	if _, err := g.Run("(while true; do /bin/true; done) </dev/null >/dev/null 2>&1 &", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var reports []*vmi.Report
	var hidden []linuxkern.Candidate
	var hiddenMods []linuxkern.ModuleCandidate
	var errs []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		vmi.Watch(ctx, vmi.WatchConfig{Memory: g.RAMFile, Interval: 300 * time.Millisecond, Indicators: vmi.AllIndicators},
			func(kind string, v any) {
				mu.Lock()
				defer mu.Unlock()
				switch kind {
				case vmi.EventReport:
					reports = append(reports, v.(*vmi.Report))
				case vmi.EventHiddenProcess:
					hidden = append(hidden, v.(linuxkern.Candidate))
				case vmi.EventHiddenModule:
					hiddenMods = append(hiddenMods, v.(linuxkern.ModuleCandidate))
				case vmi.EventError:
					errs = append(errs, v.(string))
				}
			})
	}()
	waitReports := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			got := len(reports)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d reports; errors %v", got, errs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReports(15)
	mu.Lock()
	churn := len(reports)
	raced := 0
	for _, r := range reports {
		raced += r.Scan["raced"]
	}
	if len(hidden) != 0 || len(hiddenMods) != 0 {
		t.Fatalf("false alarms under process churn: %+v %+v", hidden, hiddenMods)
	}
	mu.Unlock()
	t.Logf("%d cycles under churn, no false alarm; %d scan hits were tasks born during the cycle (confirmed listed)", churn, raced)

	out, err := g.Run("sleep 7777 </dev/null >/dev/null & echo $!", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	victim := strings.TrimSpace(out)
	if out, err := g.Run("insmod /secaas_dkom.ko pid="+victim+" hide_module=1; echo rc=$?", 30*time.Second); err != nil || !strings.Contains(out, "rc=0") {
		t.Fatalf("insmod: %v %s", err, out)
	}
	waitReports(churn + 10)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(hidden) != 1 || fmt.Sprint(hidden[0].PID) != victim || hidden[0].Exe != "/bin/busybox" {
		t.Fatalf("hidden-process alarms %+v, want one for pid %s", hidden, victim)
	}
	if len(hiddenMods) != 1 || hiddenMods[0].Name != "secaas_dkom" {
		t.Fatalf("hidden-module alarms %+v", hiddenMods)
	}
	last := reports[len(reports)-1]
	if len(last.HiddenProcesses) != 1 || len(last.Processes) < 30 || last.Kernel != k.Version || len(last.Partial) != 0 {
		t.Errorf("last report: kernel %s, %d processes, hidden %+v, partial %v", last.Kernel, len(last.Processes), last.HiddenProcesses, last.Partial)
	}
	t.Logf("alarms: %s (%v); module %s; last cycle %.1f ms", victim, hidden[0].Evidence, hiddenMods[0].Name, last.TookMS)
}
