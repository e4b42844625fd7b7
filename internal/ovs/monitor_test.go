package ovs_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"secaas/internal/lab/labtest"
)

// TestMonitorReportsEveryChange: adding, modifying and deleting a flow by
// hand is each reported within a second.
func TestMonitorReportsEveryChange(t *testing.T) {
	labtest.RequireOVS(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	br := labtest.Bridge(t, "sctmon")
	ch, err := br.Monitor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the monitor's initial reply
	for len(ch) > 0 {
		<-ch
	}
	for _, args := range [][]string{
		{"add-flow", br.Name, "priority=5,ip,actions=drop"},
		{"mod-flows", "--strict", br.Name, "priority=5,ip,actions=NORMAL"},
		{"del-flows", br.Name},
	} {
		t0 := time.Now()
		if out, err := exec.Command("ovs-ofctl", append([]string{"-O", "OpenFlow14"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
		select {
		case <-ch:
			t.Logf("%s reported in %s", args[0], time.Since(t0).Round(time.Millisecond))
		case <-time.After(time.Second):
			t.Fatalf("%s not reported", args[0])
		}
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the channel stayed open after ctx ended")
	}
}
