package hyperav

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"secaas/internal/av"
	"secaas/internal/lab"
	"secaas/internal/lab/guesttest"
	"secaas/internal/qmp"
)

// testKernel returns the guest kernel, or skips (fails under CI) when
// QEMU or the kernel is missing.
func testKernel(t *testing.T) string {
	t.Helper()
	return guesttest.Kernel(t)
}

// guestWithDisk boots a guest with an ext4 data disk (qcow2, partition 1)
// holding /untouched.txt, mounted at /mnt.
func guestWithDisk(t *testing.T, name string, disks func(img string) []lab.GuestDisk) (*lab.Guest, string) {
	t.Helper()
	kernel := testKernel(t)
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "untouched.txt"), []byte(strings.Repeat("nothing to see here\n", 500)), 0o644)
	raw := partitionedDisk(t, root)
	img := filepath.Join(t.TempDir(), "data.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: name, Kernel: kernel, MemMiB: 256, Dir: t.TempDir(),
		Modules: []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}, Disks: disks(img)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	t.Logf("guest on %s", g.Accel)
	if out, err := g.Run("mkdir -p /mnt && mount -t ext4 /dev/vda1 /mnt && echo mounted", 60*time.Second); err != nil || !strings.Contains(out, "mounted") {
		t.Fatalf("mount: %v %s", err, out)
	}
	return g, img
}

// writeInGuest writes data to a file in the guest and syncs it.
func writeInGuest(t *testing.T, g *lab.Guest, path string, data string) {
	t.Helper()
	quoted := "'" + strings.ReplaceAll(data, "'", `'\''`) + "'"
	if out, err := g.Run("printf '%s' "+quoted+" > "+path+" && sync && echo written", 60*time.Second); err != nil || !strings.Contains(out, "written") {
		t.Fatalf("write %s: %v %s", path, err, out)
	}
}

// TestBitmapModeLiveGuest: HyperAV in bitmap mode on a running guest. QEMU's
// dirty bitmap records the guest's writes; each epoch hands them over
// atomically through the NBD export's block status. EICAR written in the
// guest is found (its file rebuilt on the host from the disk as QEMU sees
// it, journal replayed); rewritten clean, it is rescanned CLEAN; a file the
// guest never touched is answered from cache with zero bytes read.
func TestBitmapModeLiveGuest(t *testing.T) {
	g, _ := guestWithDisk(t, "secaas-test-avbm", func(img string) []lab.GuestDisk {
		return []lab.GuestDisk{{Node: "disk0", File: img, Format: "qcow2"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	q, err := qmp.Dial(ctx, g.QMP)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	tr, inconsistent, err := StartBitmapTracker(ctx, q, "disk0", "secaas-dirty", t.TempDir(), false)
	if err != nil || inconsistent {
		t.Fatalf("tracker: %v %v", err, inconsistent)
	}
	c := clamd(t)
	rd, closeRd, err := tr.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeRd()
	st, err := NewState(rd.Size, DefaultGranularity)
	if err != nil {
		t.Fatal(err)
	}
	sc := &Scanner{Disk: rd, State: st, AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}
	epoch := func() []Range {
		t.Helper()
		rs, err := tr.Epoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			st.MarkWritten(r.Start, r.Len)
		}
		return rs
	}
	epoch() // the mount's own writes
	if r, err := sc.ScanFile(ctx, "/untouched.txt"); err != nil || r.Verdict != "CLEAN" || r.Cached {
		t.Fatalf("first scan: %+v %v", r, err)
	}

	writeInGuest(t, g, "/mnt/x", string(eicar()))
	written := epoch()
	if len(written) == 0 {
		t.Fatal("the guest's write left the dirty bitmap empty")
	}
	r, err := sc.ScanFile(ctx, "/x")
	if err != nil || r.Verdict != "INFECTED" {
		t.Fatalf("EICAR written in the guest: %+v %v", r, err)
	}
	t.Logf("epoch: %d dirty ranges; /x: %s by %s, %d bytes read", len(written), r.Verdict, r.Engines.Signatures(), r.BytesRead)

	writeInGuest(t, g, "/mnt/x", "all clean now\n")
	epoch()
	if r, err := sc.ScanFile(ctx, "/x"); err != nil || r.Verdict != "CLEAN" || r.Cached {
		t.Fatalf("rewritten clean: %+v %v", r, err)
	}
	// The guest created /x next to /untouched.txt: their directory and
	// inode-table block changed, so the file is located again — metadata
	// only, none of its data.
	r, err = sc.ScanFile(ctx, "/untouched.txt")
	if err != nil || !r.Cached || r.DataRead != 0 || r.Verdict != "CLEAN" {
		t.Fatalf("untouched file: %+v %v", r, err)
	}
	t.Logf("untouched file after the guest wrote beside it: cached, %d metadata bytes read, 0 data bytes", r.BytesRead)
	// Nothing written since: not a byte (unless the guest's own kernel
	// wrote meanwhile — a journal commit — which the epoch then shows).
	quiet := epoch()
	r, err = sc.ScanFile(ctx, "/untouched.txt")
	if err != nil || !r.Cached || r.DataRead != 0 || (r.BytesRead != 0 && len(quiet) == 0) {
		t.Fatalf("untouched file, quiet disk (%d ranges written): %+v %v", len(quiet), r, err)
	}
}

// TestFrontModeLiveGuest: HyperAV in front mode. The guest's disk is served
// by secaas over NBD; every guest write is seen as it happens. EICAR written
// in the guest is detected and isolated: a read inside the guest (page cache
// dropped) returns zeros, while the image keeps the bytes. Rewritten with
// clean data, the file is readable and rescanned CLEAN; an untouched file
// is answered from cache with no data read.
func TestFrontModeLiveGuest(t *testing.T) {
	for _, transport := range []string{"nbd", "vhost-user"} {
		t.Run(transport, func(t *testing.T) { frontModeLive(t, transport) })
	}
}

func frontModeLive(t *testing.T, transport string) {
	var front *Front
	var st *State
	sock := filepath.Join(t.TempDir(), "front.sock")
	g, _ := guestWithDisk(t, "secaas-test-avfm-"+transport, func(img string) []lab.GuestDisk {
		raw := img + ".raw"
		if out, err := exec.Command("qemu-img", "convert", "-O", "raw", img, raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		info, _ := os.Stat(raw)
		var err error
		if st, err = NewState(info.Size(), DefaultGranularity); err != nil {
			t.Fatal(err)
		}
		if transport == "vhost-user" {
			front, err = StartVhostFront(raw, sock, st, FrontOptions{})
		} else {
			// O_DIRECT here (cache=none), the page cache over vhost-user.
			front, err = StartFront(raw, sock, "disk0", st, FrontOptions{Direct: true})
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { front.Close() })
		if transport == "vhost-user" {
			return []lab.GuestDisk{{Node: "disk0", VhostUser: sock}}
		}
		return []lab.GuestDisk{{Node: "disk0", NBD: sock, Export: "disk0"}}
	})
	ctx := context.Background()
	c := clamd(t)
	sc := &Scanner{Disk: front.Image, State: st, AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}
	if r, err := sc.ScanFile(ctx, "/untouched.txt"); err != nil || r.Verdict != "CLEAN" {
		t.Fatalf("first scan: %+v %v", r, err)
	}
	before := st.Counts()[Written]
	writeInGuest(t, g, "/mnt/x", string(eicar()))
	if st.Counts()[Written] <= before {
		t.Fatal("the front saw no write")
	}
	r, err := sc.ScanFile(ctx, "/x")
	if err != nil || r.Verdict != "INFECTED" {
		t.Fatalf("EICAR written in the guest: %+v %v", r, err)
	}
	// Isolated: the guest reads zeros (its page cache dropped first).
	out, err := g.Run("echo 3 > /proc/sys/vm/drop_caches; od -An -c /mnt/x | head -3", 30*time.Second)
	if err != nil || strings.Contains(out, "X   5   O") || !strings.Contains(out, `\0  \0  \0`) {
		t.Fatalf("the guest still reads the infected file: %v %q", err, out)
	}
	onDisk := make([]byte, len(eicar()))
	front.Image.ReadAt(onDisk, r.Ranges[0].Start)
	if string(onDisk) != string(eicar()) {
		t.Fatal("isolation destroyed the bytes: the image must keep them (quarantine is a separate step)")
	}
	t.Logf("isolated %v; the guest reads zeros: %q", st.InfectedRanges(), strings.Fields(out)[:4])

	writeInGuest(t, g, "/mnt/x", "all clean now\n")
	if r, err := sc.ScanFile(ctx, "/x"); err != nil || r.Verdict != "CLEAN" || r.Cached {
		t.Fatalf("rewritten clean: %+v %v", r, err)
	}
	out, err = g.Run("echo 3 > /proc/sys/vm/drop_caches; cat /mnt/x", 30*time.Second)
	if err != nil || out != "all clean now" {
		t.Fatalf("the clean file reads %q (%v)", out, err)
	}
	if r, err := sc.ScanFile(ctx, "/untouched.txt"); err != nil || !r.Cached || r.DataRead != 0 {
		t.Fatalf("untouched file: %+v %v", r, err)
	}
}

// TestGuestToolAndService: the HyperAV service in front mode (vhost-user
// transport) and the guest
// tool over a virtio-serial port. In the guest, secaas-guest reports a
// file's extents (FIEMAP) where the host finds them too; asks for a scan of
// a file it just wrote (INFECTED, exit status 3); and, watching a
// directory with inotify, gets a file scanned as soon as it is closed.
func TestGuestToolAndService(t *testing.T) {
	kernel := testKernel(t)
	dir := t.TempDir()
	tool, err := lab.GuestTool("../..", dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := lab.MakeDataDisk(dir, map[string][]byte{"/untouched.txt": []byte(strings.Repeat("quiet\n", 3000))}, 32, true)
	if err != nil {
		t.Fatal(err)
	}
	c := clamd(t)
	sock := filepath.Join(dir, "front.sock")
	svc, err := NewService(ServiceConfig{Mode: "front", Transport: "vhost-user", Cache: "none", Disk: img, Socket: sock, Every: time.Hour, Dir: filepath.Join(dir, "svc"),
		AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}, func(string, any) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-test-avtool", Kernel: kernel, MemMiB: 256, Dir: t.TempDir(),
		Modules: []string{"virtio_pci", "virtio_blk", "virtio_console", "crc32c_generic", "ext4"},
		Disks:   []lab.GuestDisk{{Node: "disk0", VhostUser: sock}},
		Ports:   []string{"secaas.0"}, Files: map[string]string{"/bin/secaas-guest": tool}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	go svc.Run(ctx)
	go ServeGuestPort(ctx, nil, g.PortSocket("secaas.0"), svc)
	if out, err := g.Run("mkdir -p /mnt && mount -t ext4 /dev/vda1 /mnt && echo ok", time.Minute); err != nil || out != "ok" {
		t.Fatalf("mount: %v %s", err, out)
	}
	// FIEMAP in the guest vs the host's own lookup.
	out, err := g.Run("secaas-guest extents /mnt/untouched.txt", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var fe struct {
		Extents []struct{ Physical int64 }
	}
	if err := json.Unmarshal([]byte(out), &fe); err != nil || len(fe.Extents) == 0 {
		t.Fatalf("extents: %v %q", err, out)
	}
	r, err := svc.Scan(ctx, "/untouched.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(1<<20) + fe.Extents[0].Physical; got != r.Ranges[0].Start {
		t.Fatalf("the guest's FIEMAP says byte %d of the disk, the host found %d", got, r.Ranges[0].Start)
	}
	writeInGuest(t, g, "/mnt/x", string(eicar()))
	out, err = g.Run("secaas-guest scan /mnt/x; echo status=$?", time.Minute)
	if err != nil || !strings.Contains(out, `"verdict":"INFECTED"`) || !strings.Contains(out, "status=3") {
		t.Fatalf("scan from the guest: %v %s", err, out)
	}
	if _, err := g.Run("secaas-guest watch /mnt > /tmp/watch.log 2>&1 &", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	writeInGuest(t, g, "/mnt/y", "x"+string(eicar())[1:]+"\n"+string(eicar()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ = g.Run("cat /tmp/watch.log", 30*time.Second)
		if strings.Contains(out, `"path":"/y"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher reported nothing: %q", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if !strings.Contains(out, `"verdict":"INFECTED"`) {
		t.Fatalf("watch: %s", out)
	}
	// An alarm raised on the host (an isolation asked for through the
	// API) is pushed to the guest tool.
	if _, err := svc.Isolate(ctx, "/untouched.txt"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(out, `"event":"av.isolated"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no pushed alarm in the guest: %q", out)
		}
		time.Sleep(300 * time.Millisecond)
		out, _ = g.Run("cat /tmp/watch.log", 30*time.Second)
	}
}

// TestBitmapServiceQuarantineAndCrash: the service in bitmap mode finds EICAR
// written in a running guest, and isolate quarantines it (a copy first, then
// zeros through the VM's own disk device: the guest reads zeros). QEMU is
// then killed before it stored the bitmap, and later killed while a stored
// one is in use: in both cases the next QEMU's bitmap cannot be trusted
// (missing, inconsistent) and the service treats every sector as written.
func TestBitmapServiceQuarantineAndCrash(t *testing.T) {
	kernel := testKernel(t)
	dir := t.TempDir()
	raw, err := lab.MakeDataDisk(dir, map[string][]byte{"/etc/motd": []byte("hello\n")}, 32, true)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "data.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	boot := func(name string) *lab.Guest {
		g, err := lab.StartGuest(context.Background(), lab.GuestConfig{Name: name, Kernel: kernel, MemMiB: 256, Dir: filepath.Join(dir, name),
			Modules: []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"},
			Disks:   []lab.GuestDisk{{Node: "disk0", File: img, Format: "qcow2"}}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	g := boot("secaas-test-avq1")
	defer g.Stop()
	t.Logf("guest on %s", g.Accel)
	c := clamd(t)
	var events []string
	newSvc := func(qmpSock string, paths []string) *Service {
		svc, err := NewService(ServiceConfig{Mode: "bitmap", Disk: img, QMP: qmpSock, Node: "disk0", Device: "/machine/peripheral/disk0-dev/virtio-backend", Paths: paths, Every: time.Hour,
			Dir: filepath.Join(dir, "svc"), AV: &av.Scanner{Engines: []av.Engine{c.Engine()}}}, func(kind string, _ any) { events = append(events, kind) })
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	svc := newSvc(g.QMP, []string{"/x"})
	ctx := context.Background()
	if out, err := g.Run("mkdir -p /mnt && mount -t ext4 /dev/vda1 /mnt && echo ok", time.Minute); err != nil || out != "ok" {
		t.Fatalf("mount: %v %s", err, out)
	}
	svc.Round(ctx) // starts the tracker (a persistent bitmap: the disk is qcow2)
	writeInGuest(t, g, "/mnt/x", string(eicar()))
	svc.Round(ctx)
	if !slices.Contains(events, EventInfected) {
		t.Fatalf("no %s after a round; events %v, status %+v", EventInfected, events, svc.Status())
	}
	iso, err := svc.Isolate(ctx, "/x")
	if err != nil {
		t.Fatal(err)
	}
	q, err := os.ReadFile(iso.Quarantine)
	if err != nil || string(q) != string(eicar()) {
		t.Fatalf("quarantine copy %q: %v", q, err)
	}
	out, err := g.Run("echo 3 > /proc/sys/vm/drop_caches; od -An -c /mnt/x | head -1", 30*time.Second)
	if err != nil || strings.Contains(out, "X   5   O") {
		t.Fatalf("the guest still reads the quarantined file: %q %v", out, err)
	}
	svc.close()

	// Crash before QEMU ever stored the bitmap: it is missing in the next
	// QEMU, and the writes since the last round went unrecorded.
	g.Stop() // SIGKILL
	allWritten := func(svc *Service, what string) {
		t.Helper()
		svc.Round(ctx)
		if st := svc.Status(); st.Chunks[Clean] != 0 {
			t.Fatalf("%s: every chunk must count as WRITTEN: %+v", what, st.Chunks)
		}
	}
	g2 := boot("secaas-test-avq2")
	defer g2.Stop()
	svc2 := newSvc(g2.QMP, nil) // no scans: look at the state the crash left
	allWritten(svc2, "bitmap missing after a crash")
	// A clean shutdown stores the persistent bitmap; the next QEMU marks it
	// in use, and if that one is killed, the one after finds it
	// inconsistent.
	svc2.tracker.QMP.Execute(ctx, "quit", nil, nil) // QMP takes one client: the service's
	svc2.close()
	time.Sleep(time.Second)
	info, err := exec.Command("qemu-img", "info", "--force-share", img).CombinedOutput()
	if err != nil || !strings.Contains(string(info), "secaas-dirty") {
		t.Fatalf("the bitmap was not stored at shutdown: %v %s", err, info)
	}
	g3 := boot("secaas-test-avq3")
	g3.Stop() // SIGKILL while the bitmap is in use
	g4 := boot("secaas-test-avq4")
	defer g4.Stop()
	svc4 := newSvc(g4.QMP, nil)
	// Start from a clean state to see the inconsistent bitmap alone at work.
	forget := func(svc *Service) {
		svc.state.mu.Lock()
		clear(svc.state.written)
		svc.state.mu.Unlock()
	}
	forget(svc4)
	allWritten(svc4, "inconsistent bitmap")
	// The bitmap that replaced the inconsistent one is persistent too: a
	// clean shutdown stores it, and the next QEMU's can be trusted again.
	svc4.tracker.QMP.Execute(ctx, "quit", nil, nil)
	svc4.close()
	time.Sleep(time.Second)
	g5 := boot("secaas-test-avq5")
	defer g5.Stop()
	svc5 := newSvc(g5.QMP, nil)
	defer svc5.close()
	forget(svc5)
	svc5.Round(ctx)
	if st := svc5.Status(); st.Chunks[Clean] == 0 {
		t.Fatalf("after a clean shutdown the stored bitmap must be trusted: %+v", st.Chunks)
	}
	t.Logf("quarantined %d bytes to %s; after each crash every chunk counted as written", len(q), filepath.Base(iso.Quarantine))
}
