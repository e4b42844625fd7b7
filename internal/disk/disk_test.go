package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"secaas/internal/lab/labtest"
	"secaas/internal/memio"
)

// TestQcow2AgainstQemuImg: a raw disk with data, holes and a zero run,
// converted by qemu-img to qcow2 (v3 and v2, 64 KiB and 4 KiB clusters),
// reads back byte for byte.
func TestQcow2AgainstQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		labtest.Missing(t, "qemu-img not installed")
	}
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "d.raw")
	want := make([]byte, 9<<20+512)
	rng := rand.New(rand.NewPCG(1, 1))
	for _, at := range []int{0, 70000, 3 << 20, 9 << 20} {
		for i := at; i < min(at+100000, len(want)); i++ {
			want[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(rawPath, want, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []string{"compat=1.1,cluster_size=65536", "compat=0.10,cluster_size=4096"} {
		q := filepath.Join(dir, "d.qcow2")
		if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", opts, rawPath, q).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		img, err := Open(q)
		if err != nil {
			t.Fatal(err)
		}
		if img.Format() != "qcow2" || img.Size() != int64(len(want)) {
			t.Fatalf("%s: %s %d", opts, img.Format(), img.Size())
		}
		got := make([]byte, len(want))
		if n, err := img.ReadAt(got, 0); n != len(got) || err != nil && n != len(got) {
			t.Fatalf("%s: read %d %v", opts, n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: contents differ", opts)
		}
		// An unaligned read across clusters.
		part := make([]byte, 200000)
		img.ReadAt(part, 65000)
		if !bytes.Equal(part, want[65000:265000]) {
			t.Fatalf("%s: unaligned read differs", opts)
		}
		img.Close()
	}
	// A backing file is refused plainly.
	over := filepath.Join(dir, "over.qcow2")
	exec.Command("qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", rawPath, over).Run()
	if _, err := Open(over); !errors.Is(err, ErrUnsupported) {
		t.Errorf("backing file: %v", err)
	}
}

// mbrDisk writes an MBR with the given (type, startLBA, sectors) entries.
func mbrDisk(size int, parts ...[3]uint32) memio.Bytes {
	d := make(memio.Bytes, size)
	for i, p := range parts {
		e := d[446+16*i:]
		e[4] = byte(p[0])
		binary.LittleEndian.PutUint32(e[8:], p[1])
		binary.LittleEndian.PutUint32(e[12:], p[2])
	}
	d[510], d[511] = 0x55, 0xaa
	return d
}

// gptDisk writes a protective MBR and a GPT with partitions (first, last LBA).
func gptDisk(size int, parts ...[2]uint64) memio.Bytes {
	d := mbrDisk(size, [3]uint32{0xee, 1, uint32(size/512 - 1)})
	le := binary.LittleEndian
	table := make([]byte, 128*128)
	for i, p := range parts {
		e := table[128*i:]
		copy(e, []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4}) // Linux data
		e[16] = byte(i + 1)
		le.PutUint64(e[32:], p[0])
		le.PutUint64(e[40:], p[1])
		for j, r := range "data" {
			le.PutUint16(e[56+2*j:], uint16(r))
		}
	}
	copy(d[2*512:], table)
	h := d[512:]
	copy(h, "EFI PART")
	le.PutUint32(h[8:], 0x10000)
	le.PutUint32(h[12:], 92)
	le.PutUint64(h[72:], 2)
	le.PutUint32(h[80:], 128)
	le.PutUint32(h[84:], 128)
	le.PutUint32(h[88:], crc32.ChecksumIEEE(table))
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	return d
}

func TestPartitions(t *testing.T) {
	d := mbrDisk(8<<20, [3]uint32{0x83, 2048, 4096}, [3]uint32{0x0c, 8192, 2048})
	ps, err := Partitions(d, int64(len(d)))
	if err != nil || len(ps) != 2 || ps[0].Start != 1<<20 || ps[0].Size != 2<<20 || ps[1].Type != "0x0c" || ps[0].Scheme != "mbr" {
		t.Fatalf("mbr: %v %+v", err, ps)
	}
	g := gptDisk(8<<20, [2]uint64{2048, 6143}, [2]uint64{6144, 8191})
	ps, err = Partitions(g, int64(len(g)))
	if err != nil || len(ps) != 2 || ps[1].Start != 6144*512 || ps[0].Size != 2<<20 || ps[0].Name != "data" || !strings.HasPrefix(ps[0].Type, "0fc63daf") {
		t.Fatalf("gpt: %v %+v", err, ps)
	}
	if ps, err := Partitions(make(memio.Bytes, 1<<20), 1<<20); err != nil || ps != nil {
		t.Fatalf("no table: %v %+v", err, ps)
	}
	for name, d := range map[string]memio.Bytes{
		"mbr past end": mbrDisk(1<<20, [3]uint32{0x83, 2048, 1 << 30}),
		"gpt bad crc":  func() memio.Bytes { g := gptDisk(8<<20, [2]uint64{2048, 4095}); g[2*512+40]++; return g }(),
		"gpt past end": gptDisk(8<<20, [2]uint64{2048, 1 << 40}),
		"gpt missing":  mbrDisk(1<<20, [3]uint32{0xee, 1, 100}),
	} {
		if _, err := Partitions(d, int64(len(d))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzImages(f *testing.F) {
	f.Add(append([]byte(qcow2Magic), make([]byte, 200)...))
	f.Add([]byte(gptDisk(64<<10, [2]uint64{34, 100})))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := make(memio.Bytes, max(len(b), 4096))
		copy(d, b)
		Partitions(d, int64(len(d)))
		if q, err := NewQcow2(d); err == nil {
			buf := make([]byte, 4096)
			q.ReadAt(buf, 0)
			q.ReadAt(buf, q.Size()/2)
		}
	})
}
