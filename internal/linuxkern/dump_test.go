package linuxkern_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/linuxkern"
	"secaas/internal/qmp"
)

// TestDumpFormats: a guest paused by QMP is read four ways — its live RAM,
// the ELF core QMP dump-guest-memory writes, a raw copy and a LiME file —
// and each gives the same process list, with no symbol file.
func TestDumpFormats(t *testing.T) {
	g := bootGuest(t, "secaas-test-dump")
	if _, err := g.Run("sleep 5151 </dev/null >/dev/null &", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := qmp.Dial(ctx, g.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	elfPath := filepath.Join(dir, "guest.elf")
	t0 := time.Now()
	if err := c.Execute(ctx, "dump-guest-memory", map[string]any{"paging": false, "protocol": "file:" + elfPath}, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("dump-guest-memory: %s", time.Since(t0))
	live := openRAM(t, g)
	rawPath := filepath.Join(dir, "guest.raw")
	if err := os.WriteFile(rawPath, live.Segments()[0].Data, 0o600); err != nil {
		t.Fatal(err)
	}
	elf, err := guestmem.Open(elfPath)
	if err != nil {
		t.Fatal(err)
	}
	defer elf.Close()
	limePath := filepath.Join(dir, "guest.lime")
	if err := os.WriteFile(limePath, guestmem.WriteLiME(elf.Segments()), 0o600); err != nil {
		t.Fatal(err)
	}
	pids := func(m *guestmem.Mem) []int32 {
		t.Helper()
		k, err := linuxkern.Open(m, m.Size())
		if err != nil {
			t.Fatalf("%s: %v", m.Format, err)
		}
		ps, err := k.ListProcesses()
		if err != nil {
			t.Fatalf("%s: %v", m.Format, err)
		}
		var out []int32
		for _, p := range ps {
			out = append(out, p.PID)
		}
		slices.Sort(out)
		return out
	}
	want := pids(live)
	if len(want) < 10 {
		t.Fatalf("live: only %d tasks", len(want))
	}
	for path, format := range map[string]string{elfPath: "elf", rawPath: "raw", limePath: "lime"} {
		m, err := guestmem.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if m.Format != format {
			t.Errorf("%s opened as %s", path, m.Format)
		}
		if got := pids(m); !slices.Equal(got, want) {
			t.Errorf("%s: pids %v, live %v", format, got, want)
		}
		t.Logf("%s: %d segments, %d MiB: %d tasks", format, len(m.Segments()), m.RAM()>>20, len(want))
		m.Close()
	}
}
