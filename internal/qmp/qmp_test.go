package qmp_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/qmp"
)

// fakeQEMU answers like QEMU: a greeting, then scripted lines per command.
func fakeQEMU(t *testing.T, replies map[string][]string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 19, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}` + "\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			for cmd, lines := range replies {
				if strings.Contains(sc.Text(), `"execute":"`+cmd+`"`) {
					for _, l := range lines {
						c.Write([]byte(l + "\n"))
					}
				}
			}
		}
	}()
	return sock
}

func TestClientAgainstFake(t *testing.T) {
	sock := fakeQEMU(t, map[string][]string{
		"qmp_capabilities": {`{"return": {}, "id": 1}`},
		"query-status": {`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}`,
			`{"return": {"status": "paused", "running": false}, "id": 2}`},
		"nonsense": {`{"id": 3, "error": {"class": "CommandNotFound", "desc": "The command nonsense has not been found"}}`},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Version != "7.2.19" {
		t.Errorf("version %q", c.Version)
	}
	var st struct{ Status string }
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "paused" {
		t.Fatalf("%v %+v", err, st)
	}
	if ev := c.Events(); len(ev) != 1 || ev[0].Event != "STOP" || ev[0].Timestamp.Seconds != 1 {
		t.Errorf("events %+v", ev)
	}
	var qe *qmp.Error
	if err := c.Execute(ctx, "nonsense", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("error %v", err)
	}
	// A command that never gets an answer ends with the context.
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := c.Execute(short, "never", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no answer: %v", err)
	}
}

// TestClientAgainstQEMU talks to a real QEMU 7.2 guest.
func TestClientAgainstQEMU(t *testing.T) {
	kernel := guesttest.Kernel(t)
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: "secaas-test-qmp", Kernel: kernel, MemMiB: 128, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, g.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Version, "7.") {
		t.Errorf("QEMU %s", c.Version)
	}
	var st struct {
		Status  string
		Running bool
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil || !st.Running {
		t.Fatalf("%v %+v", err, st)
	}
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	var qe *qmp.Error
	if err := c.Execute(ctx, "no-such-command", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("error %v", err)
	}
	var stopped bool
	for _, ev := range c.Events() {
		stopped = stopped || ev.Event == "STOP"
	}
	if !stopped {
		t.Error("no STOP event seen")
	}
}
