package linuxkern

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"secaas/internal/memio"
)

// Where the synthetic kernel of these tests keeps what a process holds
// (physical addresses; the direct map reaches them at pageOffset+pa).
const (
	hTask   = 0x2000
	hFiles  = 0x3000
	hFdt    = 0x3100
	hFdArr  = 0x3200
	hBitmap = 0x3300
	hMm     = 0x6000
	hMount  = 0x7000 // the root mount; its vfsmount at +32
	hRoot   = 0x7200 // the root dentry
	hNode   = 0x8000 // maple nodes from here, 256 bytes apart
	hVma    = 0xa000 // vm_area_structs from here, 256 bytes apart
)

func dm(pa int64) uint64 { return pageOffset + uint64(pa) }

func put64(ram memio.Bytes, pa int64, v uint64) { binary.LittleEndian.PutUint64(ram[pa:], v) }

// heldKernel is hostileKernel with a held-object layout and one process
// at hTask whose files_struct and mm are set up empty.
func heldKernel(ram memio.Bytes) (*Kernel, Process) {
	k := hostileKernel(ram, 0x1000)
	k.Detail = DetailLayout{FilePath: 16, PathMnt: 0, PathDentry: 8, DentryParent: 24, DentryNameLen: 36, DentryName: 40,
		MountParent: 16, MountMountpoint: 24, MountMnt: 32, VfsmountRoot: 0}
	k.Held = HeldLayout{TaskFiles: 200, FilesFdt: 32, FdtMaxFds: 0, FdtFd: 8, FdtOpenFds: 24,
		FileInode: 48, FileOp: 56, FilePrivate: 64, InodeIno: 64, InodeMode: 0, SocketSk: 24,
		SkFamily: 16, SkState: 18, SkType: 120, SkProtocol: 122, SkDaddr: 0, SkRcvSaddr: 4, SkDport: 12, SkNum: 14,
		SkV6Daddr: 56, SkV6RcvSaddr: 72, UnixAddr: 160, UnixPath: 168, UnixAddrLen: 4, UnixAddrName: 8,
		Maple: true, MmMaps: 8, R64Pivot: 8, R64Slot: 128, R64Meta: 248, A64Pivot: 8, A64Slot: 80, A64Meta: 240,
		VmaStart: 0, VmaEnd: 8, VmaMm: 16, VmaFlags: 32, VmaPgoff: 104, VmaFile: 112, VmaOps: 120, VmaPrivate: 128, SpecialName: 0,
		MmPgd: 72, MmArgStart: 80, MmArgEnd: 88, MmEnvStart: 96, MmEnvEnd: 104, MmStartBrk: 112, MmBrk: 120, MmStartStack: 128, MmVdso: 136}
	put64(ram, hTask+200, dm(hFiles))
	put64(ram, hTask+72, dm(hMm))
	put64(ram, hFiles+32, dm(hFdt))
	put64(ram, hFdt+8, dm(hFdArr))
	put64(ram, hFdt+24, dm(hBitmap))
	// The root mount: its own parent, rooted at hRoot.
	put64(ram, hMount+16, dm(hMount))
	put64(ram, hMount+32, dm(hRoot))
	put64(ram, hRoot+24, dm(hRoot))
	return k, Process{Task: dm(hTask), PID: 7, Comm: "victim"}
}

// dentry writes a dentry named name under parent at pa.
func dentry(ram memio.Bytes, pa int64, name string, parent int64) {
	put64(ram, pa+24, dm(parent))
	binary.LittleEndian.PutUint32(ram[pa+36:], uint32(len(name)))
	put64(ram, pa+40, dm(pa+64))
	copy(ram[pa+64:], name)
}

// openFD installs a regular file at dentry d as descriptor fd (file
// struct at pa, inode at pa+0x80).
func openFD(ram memio.Bytes, fd int, pa, d int64) {
	put64(ram, pa+16, dm(hMount+32)) // f_path.mnt
	put64(ram, pa+24, dm(d))         // f_path.dentry
	put64(ram, pa+48, dm(pa+0x80))   // f_inode
	binary.LittleEndian.PutUint16(ram[pa+0x80:], 0o100644)
	put64(ram, pa+0x80+64, uint64(1000+fd))
	put64(ram, hFdArr+int64(fd)*8, dm(pa))
	ram[hBitmap+int64(fd/8)] |= 1 << (fd % 8)
	if max := binary.LittleEndian.Uint32(ram[hFdt:]); uint32(fd) >= max {
		binary.LittleEndian.PutUint32(ram[hFdt:], uint32(fd+1))
	}
}

// TestHostileFdTable: a well-formed table lists its files with paths; a
// max_fds past the kernel's limit, a bitmap outside memory and a dentry
// cycle each end in bounded time with an error or an empty path.
func TestHostileFdTable(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	k, p := heldKernel(ram)
	dentry(ram, 0x7300, "etc", hRoot)
	dentry(ram, 0x7400, "hosts", 0x7300)
	openFD(ram, 0, 0x4000, 0x7400)
	openFD(ram, 3, 0x4200, 0x7300)
	fs, err := k.Files(p)
	if err != nil || len(fs) != 2 || fs[0].Path != "/etc/hosts" || fs[1].FD != 3 || fs[1].Path != "/etc" || fs[0].Inode != 1000 {
		t.Fatalf("files: %v %+v", err, fs)
	}
	// A dentry cycle that never reaches the root: bounded, no path.
	dentry(ram, 0x7300, "etc", 0x7400)
	t0 := time.Now()
	if fs, err := k.Files(p); err != nil || fs[0].Path != "" {
		t.Fatalf("dentry cycle: %v %+v", err, fs)
	}
	if el := time.Since(t0); el > time.Second {
		t.Fatalf("dentry cycle took %s", el)
	}
	binary.LittleEndian.PutUint32(ram[hFdt:], 1<<30)
	if _, err := k.Files(p); !errors.Is(err, ErrHostile) {
		t.Fatalf("max_fds 1<<30: %v", err)
	}
	binary.LittleEndian.PutUint32(ram[hFdt:], 64)
	put64(ram, hFdt+24, dm(1<<40))
	if _, err := k.Files(p); err == nil {
		t.Fatal("a bitmap outside memory was read")
	}
}

// vma writes a vm_area_struct n of mm.
func vma(ram memio.Bytes, n int, start, end uint64, mm int64) uint64 {
	pa := int64(hVma + 256*n)
	put64(ram, pa, start)
	put64(ram, pa+8, end)
	put64(ram, pa+16, dm(mm))
	put64(ram, pa+32, 3) // rw
	return dm(pa)
}

// leaf writes a maple leaf_64 node n holding entries up to pivots.
func leaf(ram memio.Bytes, n int, pivots []uint64, slots []uint64) uint64 {
	pa := int64(hNode + 256*n)
	clear(ram[pa : pa+256])
	for i, pv := range pivots {
		put64(ram, pa+8+int64(i)*8, pv)
	}
	for i, s := range slots {
		put64(ram, pa+128+int64(i)*8, s)
	}
	ram[pa+248] = byte(len(slots) - 1) // metadata end
	return dm(pa) | mapleLeaf64<<3 | 4
}

// TestHostileMapleTree: a real-shaped tree lists its mappings in order; a
// node that points back at itself, pivots out of order, and a mapping
// of another mm end in ErrHostile.
func TestHostileMapleTree(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	k, p := heldKernel(ram)
	a := vma(ram, 0, 0x400000, 0x401000, hMm)
	b := vma(ram, 1, 0x7ff000000000, 0x7ff000021000, hMm)
	// An arange_64 root with two leaf children: [0, 0x500000) and the rest.
	l0 := leaf(ram, 1, []uint64{0x3fffff, 0x400fff, 0x4fffff}, []uint64{0, a, 0})
	l1 := leaf(ram, 2, []uint64{0x7fefffffffff, 0x7ff000020fff}, []uint64{0, b, 0})
	root := int64(hNode)
	clear(ram[root : root+256])
	put64(ram, root+8, 0x4fffff)
	put64(ram, root+80, l0)
	put64(ram, root+88, l1)
	ram[root+240] = 1
	put64(ram, hMm+8, dm(root)|mapleArange64<<3|4|2)
	maps, err := k.Maps(p)
	if err != nil || len(maps) != 2 || maps[0].Start != 0x400000 || maps[1].End != 0x7ff000021000 || maps[0].Perms != "rw-p" {
		t.Fatalf("maps: %v %+v", err, maps)
	}
	// The second child is the root itself: a cycle.
	put64(ram, root+88, dm(root)|mapleArange64<<3|4)
	if _, err := k.Maps(p); !errors.Is(err, ErrHostile) {
		t.Fatalf("cycle: %v", err)
	}
	put64(ram, root+88, l1)
	// Pivots going backwards.
	leaf(ram, 2, []uint64{0x7fefffffffff, 0x10}, []uint64{0, b, 0})
	if _, err := k.Maps(p); !errors.Is(err, ErrHostile) {
		t.Fatalf("pivots backwards: %v", err)
	}
	leaf(ram, 2, []uint64{0x7fefffffffff, 0x7ff000020fff}, []uint64{0, b, 0})
	// A mapping of another process's mm.
	vma(ram, 1, 0x7ff000000000, 0x7ff000021000, hMm+0x100)
	if _, err := k.Maps(p); !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), "belongs to") {
		t.Fatalf("foreign vma: %v", err)
	}
}

// TestUserStrings: a command line read through the process's own page
// tables, split at NULs; an area the tables do not map is an error.
func TestUserStrings(t *testing.T) {
	ram := make(memio.Bytes, 1<<20)
	k, p := heldKernel(ram)
	// Process page tables at 0x20000: user va 0x7ffc00000000 -> pa 0x30000.
	const pgd = 0x20000
	va := uint64(0x7ffc00000000)
	pte(ram, pgd, (va>>39)&511, 0x21000|7)
	pte(ram, 0x21000, (va>>30)&511, 0x22000|7)
	pte(ram, 0x22000, (va>>21)&511, 0x23000|7)
	pte(ram, 0x23000, (va>>12)&511, 0x30000|7)
	copy(ram[0x30000:], "nc\x00-l\x00-p\x004444\x00HOME=/\x00")
	put64(ram, hMm+72, dm(pgd))
	put64(ram, hMm+80, va)
	put64(ram, hMm+88, va+14)
	put64(ram, hMm+96, va+14)
	put64(ram, hMm+104, va+21)
	cmd, env, err := k.Args(p)
	if err != nil || strings.Join(cmd, " ") != "nc -l -p 4444" || len(env) != 1 || env[0] != "HOME=/" {
		t.Fatalf("args: %v %q %q", err, cmd, env)
	}
	put64(ram, hMm+88, va+8192) // into an unmapped page
	if _, _, err := k.Args(p); !errors.Is(err, ErrNotMapped) {
		t.Fatalf("unmapped: %v", err)
	}
	put64(ram, hMm+88, va-1) // end before start
	if _, _, err := k.Args(p); !errors.Is(err, ErrHostile) {
		t.Fatalf("inverted: %v", err)
	}
}

// FuzzHeld: whatever memory holds, the walks of what a process holds end
// and do not panic.
func FuzzHeld(f *testing.F) {
	f.Add(make([]byte, 512), []byte{0})
	f.Fuzz(func(t *testing.T, b []byte, where []byte) {
		ram := make(memio.Bytes, 1<<17)
		k, p := heldKernel(ram)
		// Spread the fuzz bytes over the structures the walks read.
		at := []int64{hFiles, hFdt, hFdArr, hBitmap, 0x4000, hMm, hMount, hRoot, hNode, hVma}
		for i := 0; len(b) > 0; i++ {
			n := min(len(b), 256)
			base := at[i%len(at)]
			if i < len(where) {
				base += int64(where[i]) * 8
			}
			copy(ram[base:], b[:n])
			b = b[n:]
		}
		k.Files(p)
		k.Maps(p)
		k.Args(p)
	})
}
