package linuxkern_test

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// holding is what "secaas-guest hold" prints.
type holding struct {
	PID    int32          `json:"pid"`
	File   string         `json:"file"`
	Listen map[string]int `json:"listen"`
	Unix   string         `json:"unix"`
	Conn   [2]int         `json:"conn"`
}

// TestHeldFromLiveGuest: in a real guest, a process holding a file, TCP and
// UDP listeners (IPv4 and IPv6), a unix listener and an established
// connection shows all of them from the host, with ports, states and
// paths; every process's fd table and memory maps match the guest's own
// /proc/PID/fd and /proc/PID/maps, and its command line /proc/PID/cmdline.
// Then the DKOM rootkit hides the process: it is gone from ps, and the
// host still lists its files and sockets.
func TestHeldFromLiveGuest(t *testing.T) {
	tool, err := lab.GuestTool("../..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range kernels(t) {
		t.Run(k.Version, func(t *testing.T) {
			cfg := lab.GuestConfig{Files: map[string]string{"/bin/secaas-guest": tool}}
			if k.Rootkit != "" {
				cfg.Files["/secaas_dkom.ko"] = k.Rootkit
			}
			if i == 0 {
				cfg.CPU = "max" // 5-level paging: user page tables walked from a PML5
			}
			held(t, bootKernel(t, fmt.Sprintf("secaas-test-held%d", i), k, cfg), k)
		})
	}
}

// held is TestHeldFromLiveGuest on one guest.
func held(t *testing.T, g *lab.Guest, k lab.GuestKernel) {
	out, err := g.Run("ip link set lo up && mkdir -p /tmp && syslogd -O /tmp/messages && httpd -p 8080 && (sleep 1000 </bin/busybox >/dev/null 2>&1 &) && (secaas-guest hold --file /tmp/held-file --unix /tmp/held.sock >/tmp/held.json </dev/null 2>&1 &) && sleep 2 && cat /tmp/held.json", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var h holding
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatalf("hold: %v: %q", err, out)
	}
	m := openRAM(t, g)
	kern, err := linuxkern.Open(m, m.Size())
	if err != nil {
		t.Fatal(err)
	}
	if err := kern.HeldErr(); err != nil {
		t.Fatal(err)
	}
	ps, err := kern.ListProcesses()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ps, func(p linuxkern.Process) bool { return p.PID == h.PID })
	if i < 0 {
		t.Fatalf("pid %d not listed", h.PID)
	}
	holder := ps[i]
	files, err := kern.Files(holder)
	if err != nil {
		t.Fatal(err)
	}
	checkHeld(t, h, files)

	// Every process against the guest's own /proc: fd targets, maps and
	// command lines. Processes whose view changed between two snapshots
	// of the guest (the shell doing the listing) are left out.
	snap := func() map[string]string {
		out, err := g.Run(`sh -c 'for p in /proc/[0-9]*; do n=${p#/proc/}; for f in $p/fd/*; do [ -e "$f" ] || [ -L "$f" ] && echo "F $n ${f##*/} $(readlink $f)"; done; while read -r l; do echo "M $n $l"; done <$p/maps; echo "C $n $(tr "\\0" " " <$p/cmdline)"; done' 2>/dev/null`, 2*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		v := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			f := strings.SplitN(strings.TrimSpace(l), " ", 3)
			if len(f) == 3 {
				v[f[1]] += f[0] + " " + strings.Join(strings.Fields(f[2]), " ") + "\n"
			}
		}
		return v
	}
	// The console's shell runs the listing, redirecting its own fds.
	console, err := g.Run("echo $$", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	before := snap()
	if ps, err = kern.ListProcesses(); err != nil {
		t.Fatal(err)
	}
	ours := map[string]string{}
	for _, p := range ps {
		if p.Kernel {
			continue
		}
		var b strings.Builder
		fs, err := kern.Files(p)
		if err != nil {
			t.Errorf("files of %d: %v", p.PID, err)
		}
		for _, f := range fs {
			fmt.Fprintf(&b, "F %d %s\n", f.FD, f.Path)
		}
		maps, err := kern.Maps(p)
		if err != nil {
			t.Errorf("maps of %d: %v", p.PID, err)
		}
		for _, mp := range maps {
			// /proc/PID/maps: range perms offset dev inode path
			fmt.Fprintf(&b, "M %08x-%08x %s %08x %s\n", mp.Start, mp.End, mp.Perms, mp.Offset, mp.Path)
		}
		cmd, _, err := kern.Args(p)
		if err != nil {
			t.Errorf("args of %d: %v", p.PID, err)
		}
		fmt.Fprintf(&b, "C %s\n", strings.Join(cmd, " "))
		ours[fmt.Sprint(p.PID)] = b.String()
	}
	after := snap()
	compared := 0
	for pid, ourView := range ours {
		if before[pid] == "" || before[pid] != after[pid] || pid == console {
			continue
		}
		compared++
		if got, want := sortedLines(ourView), sortedLines(dropDevInode(before[pid])); got != want {
			t.Errorf("pid %s: from memory:\n%s\nthe guest's /proc:\n%s", pid, got, want)
		}
	}
	t.Logf("%d processes match the guest's /proc (fds, maps, cmdline)", compared)
	if compared < len(ours)-1 || compared < 4 { // all but the console shell
		t.Errorf("only %d of %d processes compared", compared, len(ours))
	}

	// Hidden by the rootkit: gone from ps, still shown with what it holds.
	if k.Rootkit == "" {
		if os.Getenv("SECAAS_GUEST_KERNEL") == "" {
			labtest.Missing(t, "no test rootkit for "+k.Version+": run scripts/guest-kernel.sh")
		}
		t.Logf("no test rootkit for %s: the hidden process is not tried", k.Version)
		return
	}
	if out, err := g.Run(fmt.Sprintf("insmod /secaas_dkom.ko pid=%d; echo rc=$?", h.PID), 30*time.Second); err != nil || !strings.Contains(out, "rc=0") {
		t.Fatalf("insmod: %v: %s", err, out)
	}
	if ps, err = kern.ListProcesses(); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(ps, func(p linuxkern.Process) bool { return p.PID == h.PID }) {
		t.Fatal("the rootkit did not hide the process")
	}
	cands, _, err := kern.ScanTasks(m.Size(), ps)
	if err != nil {
		t.Fatal(err)
	}
	i = slices.IndexFunc(cands, func(c linuxkern.Candidate) bool { return c.Status == "hidden" && c.PID == h.PID })
	if i < 0 {
		t.Fatalf("pid %d not found hidden", h.PID)
	}
	files, err = kern.Files(cands[i].Process)
	if err != nil {
		t.Fatal(err)
	}
	checkHeld(t, h, files)
}

// checkHeld: files holds the held file, the four listeners, the unix
// listener and both ends of the connection.
func checkHeld(t *testing.T, h holding, files []linuxkern.OpenFile) {
	t.Helper()
	var socks []linuxkern.Socket
	var sawFile bool
	for _, f := range files {
		if f.PID != h.PID {
			t.Errorf("row of pid %d: %+v", f.PID, f)
		}
		if f.Path == h.File && f.Type == "file" {
			sawFile = true
		}
		if f.Sock != nil {
			socks = append(socks, *f.Sock)
		}
	}
	if !sawFile {
		t.Errorf("the held file %s is not among %+v", h.File, files)
	}
	want := []string{
		fmt.Sprintf("tcp LISTEN 127.0.0.1:%d", h.Listen["tcp4"]),
		fmt.Sprintf("mptcp LISTEN ::1:%d", h.Listen["tcp6"]),
		fmt.Sprintf("udp UNCONN 127.0.0.1:%d", h.Listen["udp4"]),
		fmt.Sprintf("udp UNCONN ::1:%d", h.Listen["udp6"]),
		fmt.Sprintf("unix LISTEN %s", h.Unix),
		fmt.Sprintf("tcp ESTABLISHED 127.0.0.1:%d->127.0.0.1:%d", h.Conn[0], h.Conn[1]),
		fmt.Sprintf("tcp ESTABLISHED 127.0.0.1:%d->127.0.0.1:%d", h.Conn[1], h.Conn[0]),
	}
	var got []string
	for _, s := range socks {
		switch {
		case s.Proto == "unix":
			got = append(got, fmt.Sprintf("unix %s %s", s.State, s.Path))
		case s.State == "ESTABLISHED":
			got = append(got, fmt.Sprintf("%s %s %s:%d->%s:%d", s.Proto, s.State, s.LocalAddr, s.LocalPort, s.RemoteAddr, s.RemotePort))
		default:
			got = append(got, fmt.Sprintf("%s %s %s:%d", s.Proto, s.State, s.LocalAddr, s.LocalPort))
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing socket %q; have %q", w, got)
		}
	}
}

// dropDevInode removes the device and inode columns of /proc/PID/maps
// lines ("M range perms offset dev inode path"), which the host does not
// print.
func dropDevInode(v string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(v), "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && f[0] == "M" {
			if _, err := strconv.Atoi(f[5]); err == nil {
				f = append(f[:4], f[6:]...)
			}
		}
		out = append(out, strings.Join(f, " "))
	}
	return strings.Join(out, "\n")
}

func sortedLines(v string) string {
	ls := strings.Split(strings.TrimSpace(v), "\n")
	for i := range ls {
		ls[i] = strings.Join(strings.Fields(ls[i]), " ")
	}
	slices.Sort(ls)
	return strings.Join(ls, "\n")
}
