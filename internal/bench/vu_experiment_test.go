package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"secaas/internal/lab"
)

// Temporary experiment (not committed): vhost-user-blk under TCG.
func TestVhostUserExperiment(t *testing.T) {
	if os.Getenv("VU_EXPERIMENT") == "" {
		t.Skip("experiment")
	}
	ctx := context.Background()
	repo, _ := filepath.Abs("../..")
	dir := "/tmp/vu"
	kernel, err := lab.FindKernel(repo)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := lab.GuestTool(repo, dir)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(n string) string {
		p := filepath.Join(dir, n)
		os.WriteFile(p, nil, 0o644)
		os.Truncate(p, 512<<20)
		return p
	}
	a, b := mk("a.raw"), mk("b.raw")
	sock := filepath.Join(dir, "vu.sock")
	os.Remove(sock)
	qsd := exec.Command("qemu-storage-daemon", "--blockdev", "driver=file,node-name=f,filename="+b+",cache.direct=off",
		"--export", "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="+sock+",writable=on")
	qsd.Stdout, qsd.Stderr = os.Stdout, os.Stderr
	if err := qsd.Start(); err != nil {
		t.Fatal(err)
	}
	defer qsd.Process.Kill()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	g, err := lab.StartGuest(ctx, lab.GuestConfig{Name: "secaas-vu", Kernel: kernel, MemMiB: 512, Dir: filepath.Join(dir, "g"),
		Files: map[string]string{"/bin/secaas-guest": tool}, Modules: []string{"virtio_pci", "virtio_blk"},
		Disks: []lab.GuestDisk{{Node: "disk0", File: a, Format: "raw"}, {Node: "disk1", VhostUser: sock}}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	out, _ := g.Run("cat /proc/partitions", 10*time.Second)
	t.Log(out)
	for _, bs := range []string{"4k", "32k", "128k"} {
		for r := 0; r < 3; r++ {
			for _, dev := range []string{"/dev/vda", "/dev/vdb"} {
				out, err := g.Run(fmt.Sprintf("secaas-guest iobench --file %s --rw write --bs %s --seconds 5", dev, bs), time.Minute)
				var res struct {
					BW   float64 `json:"bw_kbs"`
					IOPS float64 `json:"iops"`
				}
				json.Unmarshal([]byte(out), &res)
				t.Logf("%s %s: %.0f KB/s %.0f IOPS (%v)", dev, bs, res.BW, res.IOPS, err)
			}
		}
	}
}
