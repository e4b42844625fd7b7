package vmi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"secaas/internal/capture"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/vmi"
)

// TestCrossViewLiveGuest: a guest on a tap serves HTTP (busybox httpd),
// an ordinary UDP echo, and a test backdoor that answers UDP on a port
// through a raw socket, with no socket bound there. The host sends to all
// three while the watch loop reads the guest's memory and the tap's
// traffic: the backdoor's port is reported once as answering with no
// socket to own it; the two real services are not.
func TestCrossViewLiveGuest(t *testing.T) {
	k := testKernel(t)
	if os.Geteuid() != 0 {
		labtest.Missing(t, "a tap device needs root")
	}
	dir := t.TempDir()
	tool, err := lab.GuestTool("../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	const tap = "sctapxv"
	exec.Command("ip", "link", "del", tap).Run()
	g := startGuest(t, k, lab.GuestConfig{Name: "secaas-test-vmix", Dir: dir, Tap: tap, Files: map[string]string{"/bin/secaas-guest": tool}})
	for _, c := range [][]string{{"ip", "addr", "add", "10.77.0.1/24", "dev", tap}, {"ip", "link", "set", tap, "up"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	out, err := g.Run("ip addr add 10.77.0.2/24 dev eth0 && ip link set eth0 up && httpd -p 8080 && "+
		"(secaas-guest answer --port 31337 --echo 5353 >/tmp/answer.json </dev/null 2>&1 &) && sleep 1 && cat /tmp/answer.json", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var backdoor struct{ PID, Port, Echo int }
	if err := json.Unmarshal([]byte(out), &backdoor); err != nil {
		t.Fatalf("answer: %v: %q", err, out)
	}

	// The host's view: the VM's port (here its tap) as the mirror gives it.
	vmAddr := netip.MustParseAddr("10.77.0.2")
	answers := vmi.NewResponses(vmAddr)
	live, err := capture.OpenLive(tap)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	go answers.Feed(live)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // clients: HTTP, the echo and the backdoor, every 300 ms
		for ctx.Err() == nil {
			if c, err := net.DialTimeout("tcp", "10.77.0.2:8080", time.Second); err == nil {
				c.Close()
			}
			for _, port := range []int{5353, 31337} {
				if c, err := net.Dial("udp", fmt.Sprintf("10.77.0.2:%d", port)); err == nil {
					c.Write([]byte("ping"))
					c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					c.Read(make([]byte, 64))
					c.Close()
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()

	var mu sync.Mutex
	var unowned []vmi.UnownedTraffic
	var reports int
	done := make(chan struct{})
	go func() {
		defer close(done)
		vmi.Watch(ctx, vmi.WatchConfig{Memory: g.RAMFile, Interval: time.Second, Indicators: map[string]bool{vmi.Processes: true, vmi.Sockets: true},
			Traffic: answers}, func(kind string, v any) {
			mu.Lock()
			defer mu.Unlock()
			switch kind {
			case vmi.EventReport:
				reports++
			case vmi.EventUnowned:
				unowned = append(unowned, v.(vmi.UnownedTraffic))
			}
		})
	}()
	time.Sleep(20 * time.Second)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d cycles; unowned %+v", reports, unowned)
	if len(unowned) != 1 || unowned[0].Proto != "udp" || unowned[0].Port != 31337 || unowned[0].Addr != vmAddr {
		t.Fatalf("unowned traffic %+v, want udp 10.77.0.2:31337 once", unowned)
	}
	ans := answers.Answering(time.Now().Add(-5*time.Second), 5*time.Second)
	var sawTCP, sawEcho bool
	for _, a := range ans {
		sawTCP = sawTCP || a.Proto == "tcp" && a.Port == 8080
		sawEcho = sawEcho || a.Proto == "udp" && a.Port == 5353
	}
	if !sawTCP || !sawEcho {
		t.Errorf("the real services were not seen answering (so their silence proves nothing): %+v", ans)
	}
}
