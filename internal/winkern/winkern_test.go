package winkern

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"secaas/internal/memio"
)

// image builds a guest's physical memory with the profile's documented
// layout: page tables at dtb mapping 2 MiB of kernel space at kva to
// physical 0x100000, a process ring through a PsActiveProcessHead, and
// the EPROCESSes given.
type image struct {
	p   Profile
	mem memio.Bytes
	kva uint64
	dtb uint64
}

const kernelPA = 0x100000

func newImage(p Profile) *image {
	im := &image{p: p, mem: make(memio.Bytes, 4<<20), dtb: 0x1000}
	le := binary.LittleEndian
	switch p.Paging {
	case "pae":
		im.kva = 0x80000000
		le.PutUint64(im.mem[0x1000+2*8:], 0x2000|1) // PDPT[2] -> PD
		le.PutUint64(im.mem[0x2000:], 0x3000|3)     // PD[0] -> PT
	case "4level":
		im.kva = 0xfffff80000000000
		le.PutUint64(im.mem[0x1000+(im.kva>>39&511)*8:], 0x4000|3) // PML4 -> PDPT
		le.PutUint64(im.mem[0x4000:], 0x2000|3)                    // PDPT[0] -> PD
		le.PutUint64(im.mem[0x2000:], 0x3000|3)                    // PD[0] -> PT
	}
	for i := uint64(0); i < 512; i++ {
		le.PutUint64(im.mem[0x3000+i*8:], (kernelPA+i*4096)|3)
	}
	return im
}

func (im *image) va(pa int64) uint64 { return im.kva + uint64(pa-kernelPA) }

func (im *image) put(b []byte, off int, v uint64) {
	if im.p.Pointer == 4 {
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
	} else {
		binary.LittleEndian.PutUint64(b[off:], v)
	}
}

// eprocess writes an EPROCESS at pa.
func (im *image) eprocess(pa int64, pid, ppid uint64, name string, exited bool) {
	p := im.p
	b := im.mem[pa:]
	b[0], b[2] = 0x03, p.HeaderSize
	im.put(b, p.DirectoryTableBase, im.dtb)
	im.put(b, p.ThreadListHead, im.kva+0x10000)
	im.put(b, p.ThreadListHead+p.Pointer, im.kva+0x10000)
	binary.LittleEndian.PutUint64(b[p.CreateTime:], 130000000000000000+pid)
	if exited {
		binary.LittleEndian.PutUint64(b[p.ExitTime:], 130000000000009999)
	}
	im.put(b, p.UniqueProcessID, pid)
	im.put(b, p.InheritedFromUniqueID, ppid)
	copy(b[p.ImageFileName:p.ImageFileName+15], name)
}

// ring links the EPROCESSes at pas (in order) and the list head at headPA.
func (im *image) ring(headPA int64, pas ...int64) {
	nodes := []uint64{im.va(headPA)}
	for _, pa := range pas {
		nodes = append(nodes, im.va(pa)+uint64(im.p.ActiveProcessLinks))
	}
	for i, n := range nodes {
		next := nodes[(i+1)%len(nodes)]
		prev := nodes[(i+len(nodes)-1)%len(nodes)]
		pa := int64(n - im.kva + kernelPA)
		im.put(im.mem[pa:], 0, next)
		im.put(im.mem[pa:], im.p.Pointer, prev)
	}
}

// TestDKOMHiddenProcess: on each profile's documented layout, the scan finds
// every live EPROCESS, the ring walk (through the System process's page
// tables and over PsActiveProcessHead) lists the linked ones, and the one
// a rootkit unlinked is reported hidden; an exited process and random
// bytes are not.
func TestDKOMHiddenProcess(t *testing.T) {
	for _, p := range Profiles {
		t.Run(p.Name, func(t *testing.T) {
			im := newImage(p)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := 0x200000; i < 0x300000; i++ { // garbage
				im.mem[i] = byte(rng.Uint32())
			}
			im.eprocess(0x101000, 4, 0, "System", false)
			im.eprocess(0x102000, 260, 4, "smss.exe", false)
			im.eprocess(0x103000, 348, 260, "csrss.exe", false)
			im.eprocess(0x104000, 1336, 348, "evil.exe", false)
			im.eprocess(0x105000, 2000, 348, "gone.exe", true)
			im.ring(0x100100, 0x101000, 0x102000, 0x103000)
			// The rootkit's unlink leaves evil.exe pointing at itself.
			self := im.va(0x104000) + uint64(p.ActiveProcessLinks)
			im.put(im.mem[0x104000:], p.ActiveProcessLinks, self)
			im.put(im.mem[0x104000:], p.ActiveProcessLinks+p.Pointer, self)

			procs, err := p.Hidden(im.mem, int64(len(im.mem)))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, pr := range procs {
				got[pr.Name] = pr.Status
			}
			want := map[string]string{"System": "listed", "smss.exe": "listed", "csrss.exe": "listed", "evil.exe": "hidden"}
			if len(got) != len(want) {
				t.Fatalf("found %v, want %v", got, want)
			}
			for n, s := range want {
				if got[n] != s {
					t.Errorf("%s: %q, want %q", n, got[n], s)
				}
			}
			// A ring that loops without coming back ends, flagged.
			im.put(im.mem[0x103000:], p.ActiveProcessLinks, im.va(0x102000)+uint64(p.ActiveProcessLinks))
			if _, err := p.Hidden(im.mem, int64(len(im.mem))); !errors.Is(err, ErrListCorrupt) {
				t.Fatalf("cycle: %v", err)
			}
			// A pointer to an unmapped page, too.
			im.put(im.mem[0x103000:], p.ActiveProcessLinks, im.kva+8<<20)
			if _, err := p.Hidden(im.mem, int64(len(im.mem))); !errors.Is(err, ErrListCorrupt) {
				t.Fatalf("unmapped: %v", err)
			}
		})
	}
}

// TestPaperFingerprint checks each of Table 1's conditions on its own.
func TestPaperFingerprint(t *testing.T) {
	for _, p := range Profiles {
		im := newImage(p)
		im.eprocess(0x101000, 4, 0, "System", false)
		good := append([]byte(nil), im.mem[0x101000:0x101000+p.span()]...)
		if _, ok := p.Fingerprint(good); !ok {
			t.Fatalf("%s: a valid EPROCESS fails", p.Name)
		}
		for name, mutate := range map[string]func(b []byte){
			"type":      func(b []byte) { b[0] = 6 },
			"size":      func(b []byte) { b[2]++ },
			"dtb align": func(b []byte) { b[p.DirectoryTableBase] |= 0x10 },
			"threads":   func(b []byte) { im.put(b, p.ThreadListHead, 0x1000) },
			"created":   func(b []byte) { binary.LittleEndian.PutUint64(b[p.CreateTime:], 0) },
			"exited":    func(b []byte) { binary.LittleEndian.PutUint64(b[p.ExitTime:], 1) },
			"pid":       func(b []byte) { im.put(b, p.UniqueProcessID, 6) },
			"name":      func(b []byte) { b[p.ImageFileName] = 0x01 },
		} {
			b := append([]byte(nil), good...)
			mutate(b)
			if _, ok := p.Fingerprint(b); ok {
				t.Errorf("%s: %s mutated, still accepted", p.Name, name)
			}
		}
	}
}

func FuzzHidden(f *testing.F) {
	f.Add([]byte{3, 0, 0x26})
	f.Fuzz(func(t *testing.T, b []byte) {
		mem := make(memio.Bytes, 64<<10)
		copy(mem, b)
		for _, p := range Profiles {
			p.Hidden(mem, int64(len(mem))) // must end
		}
	})
}
