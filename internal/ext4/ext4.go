package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// FS is an open ext4 (or ext2/ext3) file system.
type FS struct {
	r              io.ReaderAt
	BlockSize      int64
	blocks         uint64
	inodesPerGroup uint32
	inodeSize      uint32
	inodes         uint32
	descSize       uint32
	groups         uint32
	firstDataBlock uint32
	incompat       uint32
	compat         uint32
	journalInode   uint32
	gdt            []byte
	// JournalBlocks is how many blocks the journal replay laid over the
	// volume (0: the journal was clean).
	JournalBlocks int
}

// Feature bits used.
const (
	incompatFiletype = 0x2
	incompatExtents  = 0x40
	incompat64bit    = 0x80
	incompatInline   = 0x8000
	// Incompatible features whose data this reader cannot interpret.
	incompatUnsupported = 0x10000 // encrypt; "recover" (a journal not yet replayed, as on any mounted file system) is read as is
)

// Error is a malformed file system.
type Error struct {
	Offset int64
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("ext4: at byte %d: %s", e.Offset, e.Msg) }

// ErrNotFound is returned for a path that does not exist.
var ErrNotFound = errors.New("no such file or directory")

func bad(off int64, format string, a ...any) error {
	return &Error{Offset: off, Msg: fmt.Sprintf(format, a...)}
}

// Open reads the superblock and group descriptors of the file system on r.
// When the superblock says the journal needs recovery (a mounted or
// crashed file system), the committed transactions of the journal are laid
// over the volume first, as the kernel would replay them: the newest
// metadata of a running guest is often only there.
func Open(r io.ReaderAt) (*FS, error) {
	fs, err := open(r)
	if err != nil {
		return nil, err
	}
	if fs.compat&compatHasJournal == 0 || fs.incompat&incompatRecover == 0 || fs.journalInode == 0 {
		return fs, nil
	}
	o, n, err := fs.replayJournal(fs.journalInode)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return fs, nil
	}
	replayed, err := open(o)
	if err != nil {
		return nil, fmt.Errorf("after journal replay: %w", err)
	}
	replayed.JournalBlocks = n
	return replayed, nil
}

func open(r io.ReaderAt) (*FS, error) {
	sb := make([]byte, 1024)
	if n, _ := r.ReadAt(sb, 1024); n < len(sb) {
		return nil, bad(1024, "superblock truncated")
	}
	le := binary.LittleEndian
	if m := le.Uint16(sb[0x38:]); m != 0xef53 {
		return nil, bad(1024+0x38, "not ext2/3/4 (magic %#x)", m)
	}
	fs := &FS{r: r}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 {
		return nil, bad(1024+0x18, "block size 2^(10+%d)", logBS)
	}
	fs.BlockSize = 1024 << logBS
	fs.blocks = uint64(le.Uint32(sb[0x4:]))
	fs.inodes = le.Uint32(sb[0x0:])
	fs.firstDataBlock = le.Uint32(sb[0x14:])
	blocksPerGroup := le.Uint32(sb[0x20:])
	fs.inodesPerGroup = le.Uint32(sb[0x28:])
	fs.inodeSize = 128
	if le.Uint32(sb[0x4c:]) >= 1 { // dynamic revision
		fs.inodeSize = uint32(le.Uint16(sb[0x58:]))
	}
	fs.incompat = le.Uint32(sb[0x60:])
	fs.compat = le.Uint32(sb[0x5c:])
	fs.journalInode = le.Uint32(sb[0xe0:])
	if fs.incompat&incompatUnsupported != 0 {
		return nil, fmt.Errorf("ext4: incompatible features %#x (encryption) are not supported", fs.incompat&incompatUnsupported)
	}
	fs.descSize = 32
	if fs.incompat&incompat64bit != 0 {
		fs.blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		fs.descSize = uint32(le.Uint16(sb[0xfe:]))
		if fs.descSize < 32 || fs.descSize > 1024 || fs.descSize&(fs.descSize-1) != 0 {
			return nil, bad(1024+0xfe, "group descriptor size %d", fs.descSize)
		}
	}
	if blocksPerGroup == 0 || fs.inodesPerGroup == 0 || fs.inodeSize < 128 || fs.inodeSize > uint32(fs.BlockSize) || fs.inodeSize&(fs.inodeSize-1) != 0 {
		return nil, bad(1024+0x20, "geometry: %d blocks and %d inodes per group, %d-byte inodes", blocksPerGroup, fs.inodesPerGroup, fs.inodeSize)
	}
	if fs.blocks == 0 || fs.blocks > 1<<48 {
		return nil, bad(1028, "%d blocks", fs.blocks)
	}
	fs.groups = uint32((fs.blocks - uint64(fs.firstDataBlock) + uint64(blocksPerGroup) - 1) / uint64(blocksPerGroup))
	if fs.groups == 0 || fs.groups > 1<<24 || uint64(fs.groups)*uint64(fs.inodesPerGroup) < uint64(fs.inodes) {
		return nil, bad(1024+0x28, "%d groups for %d inodes", fs.groups, fs.inodes)
	}
	gdtOff := int64(fs.firstDataBlock+1) * fs.BlockSize
	fs.gdt = make([]byte, int64(fs.groups)*int64(fs.descSize))
	if n, _ := r.ReadAt(fs.gdt, gdtOff); n < len(fs.gdt) {
		return nil, bad(gdtOff, "group descriptors truncated")
	}
	return fs, nil
}

// Inode is a file's metadata.
type Inode struct {
	Num   uint32
	Mode  uint16
	Size  int64
	Flags uint32
	block [60]byte
}

// File mode types.
const (
	ModeDir     = 0x4000
	ModeRegular = 0x8000
	ModeSymlink = 0xa000
	modeType    = 0xf000
)

// IsDir tells a directory.
func (i *Inode) IsDir() bool { return i.Mode&modeType == ModeDir }

// IsRegular tells a regular file.
func (i *Inode) IsRegular() bool { return i.Mode&modeType == ModeRegular }

const (
	flagExtents = 0x80000
	flagInline  = 0x10000000
)

// MaxFileSize bounds a file this reader will map.
const MaxFileSize = 1 << 40

// Inode reads inode n.
func (fs *FS) Inode(n uint32) (*Inode, error) {
	if n == 0 || n > fs.inodes {
		return nil, bad(1024, "inode %d out of range (1..%d)", n, fs.inodes)
	}
	g := (n - 1) / fs.inodesPerGroup
	idx := (n - 1) % fs.inodesPerGroup
	d := fs.gdt[int64(g)*int64(fs.descSize):]
	le := binary.LittleEndian
	table := uint64(le.Uint32(d[0x8:]))
	if fs.descSize >= 64 {
		table |= uint64(le.Uint32(d[0x28:])) << 32
	}
	if table == 0 || table >= fs.blocks {
		return nil, bad(int64(fs.firstDataBlock+1)*fs.BlockSize+int64(g)*int64(fs.descSize), "group %d: inode table at block %d", g, table)
	}
	off := int64(table)*fs.BlockSize + int64(idx)*int64(fs.inodeSize)
	b := make([]byte, 128)
	if n, _ := fs.r.ReadAt(b, off); n < len(b) {
		return nil, bad(off, "inode %d truncated", n)
	}
	ino := &Inode{Num: n, Mode: le.Uint16(b[0:]), Flags: le.Uint32(b[0x20:])}
	ino.Size = int64(uint64(le.Uint32(b[0x4:])) | uint64(le.Uint32(b[0x6c:]))<<32)
	if ino.Size < 0 || ino.Size > MaxFileSize {
		return nil, bad(off+4, "inode %d: size %d", n, ino.Size)
	}
	copy(ino.block[:], b[0x28:0x28+60])
	return ino, nil
}

// Extent is a run of a file's data: Len bytes of the file from byte Logical
// are at byte Physical of the volume. Unwritten extents (allocated, never
// written) read as zeros.
type Extent struct {
	Logical   int64 `json:"logical"`
	Physical  int64 `json:"physical"`
	Len       int64 `json:"len"`
	Unwritten bool  `json:"unwritten,omitempty"`
}

// Limits on extent trees and block maps.
const (
	maxDepth   = 5
	MaxExtents = 1 << 20
)

// Extents returns the data extents of an inode, in logical order, clipped
// to its size. Inline files (data inside the inode) have none.
func (fs *FS) Extents(ino *Inode) ([]Extent, error) {
	if ino.Flags&flagInline != 0 {
		return nil, nil
	}
	if ino.Mode&modeType == ModeSymlink && ino.Size < 60 {
		return nil, nil // a fast symlink: the target is in i_block
	}
	var out []Extent
	var err error
	if ino.Flags&flagExtents != 0 {
		err = fs.extentNode(ino.block[:], maxDepth, &out)
	} else {
		err = fs.blockMap(ino, &out)
	}
	if err != nil {
		return nil, fmt.Errorf("inode %d: %w", ino.Num, err)
	}
	// Clip to the file size (the last block is partly used).
	var clipped []Extent
	for _, e := range out {
		if e.Logical >= ino.Size {
			continue
		}
		if e.Logical+e.Len > ino.Size {
			e.Len = ino.Size - e.Logical
		}
		clipped = append(clipped, e)
	}
	return clipped, nil
}

func (fs *FS) extentNode(b []byte, depthLeft int, out *[]Extent) error {
	le := binary.LittleEndian
	if len(b) < 12 || le.Uint16(b) != 0xf30a {
		return errors.New("bad extent header")
	}
	entries, maxE, depth := int(le.Uint16(b[2:])), int(le.Uint16(b[4:])), int(le.Uint16(b[6:]))
	if entries > maxE || 12+12*maxE > len(b)+12 || 12+12*entries > len(b) || depth >= depthLeft {
		return fmt.Errorf("extent node: %d of %d entries, depth %d", entries, maxE, depth)
	}
	for i := 0; i < entries; i++ {
		e := b[12+12*i:]
		if depth == 0 {
			lblk := uint64(le.Uint32(e))
			n := uint64(le.Uint16(e[4:]))
			unwritten := n > 32768
			if unwritten {
				n -= 32768
			}
			start := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if n == 0 || start+n > fs.blocks {
				return fmt.Errorf("extent of %d blocks at block %d (file system has %d)", n, start, fs.blocks)
			}
			if len(*out) >= MaxExtents {
				return fmt.Errorf("more than %d extents", MaxExtents)
			}
			bs := uint64(fs.BlockSize)
			*out = append(*out, Extent{Logical: int64(lblk * bs), Physical: int64(start * bs), Len: int64(n * bs), Unwritten: unwritten})
			continue
		}
		leaf := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		if leaf == 0 || leaf >= fs.blocks {
			return fmt.Errorf("extent index to block %d", leaf)
		}
		child := make([]byte, fs.BlockSize)
		if n, _ := fs.r.ReadAt(child, int64(leaf)*fs.BlockSize); n < len(child) {
			return fmt.Errorf("extent block %d truncated", leaf)
		}
		if err := fs.extentNode(child, depth, out); err != nil {
			return err
		}
	}
	return nil
}

// blockMap reads an ext2/ext3 block map: 12 direct blocks, then single,
// double and triple indirect blocks.
func (fs *FS) blockMap(ino *Inode, out *[]Extent) error {
	le := binary.LittleEndian
	bs := fs.BlockSize
	nblocks := (ino.Size + bs - 1) / bs
	var lblk int64
	add := func(p uint32) error {
		if lblk >= nblocks {
			return nil
		}
		if p != 0 {
			if uint64(p) >= fs.blocks {
				return fmt.Errorf("block %d past the file system", p)
			}
			ext := Extent{Logical: lblk * bs, Physical: int64(p) * bs, Len: bs}
			if n := len(*out); n > 0 && (*out)[n-1].Logical+(*out)[n-1].Len == ext.Logical && (*out)[n-1].Physical+(*out)[n-1].Len == ext.Physical {
				(*out)[n-1].Len += bs
			} else if n >= MaxExtents {
				return fmt.Errorf("more than %d extents", MaxExtents)
			} else {
				*out = append(*out, ext)
			}
		}
		lblk++
		return nil
	}
	var walk func(p uint32, level int) error
	walk = func(p uint32, level int) error {
		per := bs / 4
		span := int64(1)
		for i := 0; i < level; i++ {
			span *= per
		}
		if p == 0 { // a hole
			lblk += span
			return nil
		}
		if level == 0 {
			return add(p)
		}
		if uint64(p) >= fs.blocks {
			return fmt.Errorf("indirect block %d past the file system", p)
		}
		blk := make([]byte, bs)
		if n, _ := fs.r.ReadAt(blk, int64(p)*bs); n < len(blk) {
			return fmt.Errorf("indirect block %d truncated", p)
		}
		for i := int64(0); i < per && lblk < nblocks; i++ {
			if err := walk(le.Uint32(blk[4*i:]), level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < 15 && lblk < nblocks; i++ {
		level := 0
		switch {
		case i == 12:
			level = 1
		case i == 13:
			level = 2
		case i == 14:
			level = 3
		}
		if err := walk(le.Uint32(ino.block[4*i:]), level); err != nil {
			return err
		}
	}
	return nil
}

// MaxReadFile bounds what ReadFile will allocate.
const MaxReadFile = 4 << 30

// ReadFile returns a file's contents (holes and unwritten extents read as
// zeros; inline data from the inode).
func (fs *FS) ReadFile(ino *Inode) ([]byte, error) {
	if ino.Flags&flagInline != 0 {
		if ino.Size > 60 {
			return nil, fmt.Errorf("inode %d: inline data beyond i_block (extended attribute) is not supported", ino.Num)
		}
		return append([]byte(nil), ino.block[:ino.Size]...), nil
	}
	if ino.Size > MaxReadFile || ino.Size > int64(fs.blocks)*fs.BlockSize {
		return nil, fmt.Errorf("inode %d: %d bytes: larger than the file system or than %d", ino.Num, ino.Size, int64(MaxReadFile))
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return nil, err
	}
	data := make([]byte, ino.Size)
	for _, e := range exts {
		if e.Unwritten {
			continue
		}
		if n, _ := fs.r.ReadAt(data[e.Logical:e.Logical+e.Len], e.Physical); int64(n) < e.Len {
			return nil, bad(e.Physical, "inode %d: data truncated", ino.Num)
		}
	}
	return data, nil
}

// Entry is one directory entry.
type Entry struct {
	Name  string
	Inode uint32
	Type  uint8
}

// MaxDirSize bounds a directory.
const MaxDirSize = 64 << 20

// ReadDir lists a directory (linear or htree: the hash index sits in
// entries with inode 0, which are skipped).
func (fs *FS) ReadDir(dir *Inode) ([]Entry, error) {
	if !dir.IsDir() {
		return nil, fmt.Errorf("inode %d is not a directory", dir.Num)
	}
	if dir.Size > MaxDirSize {
		return nil, fmt.Errorf("directory inode %d: %d bytes", dir.Num, dir.Size)
	}
	data, err := fs.ReadFile(dir)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out []Entry
	if dir.Flags&flagInline != 0 { // inline dir: parent inode, then entries
		if len(data) < 4 {
			return nil, nil
		}
		data = data[4:]
	}
	for off := 0; off+8 <= len(data); {
		ino := le.Uint32(data[off:])
		recLen := int(le.Uint16(data[off+4:]))
		nameLen := int(data[off+6])
		if recLen < 8 || off+recLen > len(data) || 8+nameLen > recLen {
			return nil, fmt.Errorf("directory inode %d: bad entry at %d (rec_len %d)", dir.Num, off, recLen)
		}
		if ino != 0 && nameLen > 0 {
			out = append(out, Entry{Name: string(data[off+8 : off+8+nameLen]), Inode: ino, Type: data[off+7]})
		}
		off += recLen
	}
	return out, nil
}

// RootInode is the root directory's inode.
const RootInode = 2

// maxPathDepth bounds a lookup.
const maxPathDepth = 256

// Lookup resolves an absolute path (no symlinks followed: a symlink on the
// way is an error, since the guest chose where it points).
func (fs *FS) Lookup(p string) (*Inode, error) {
	clean := path.Clean("/" + p)
	cur, err := fs.Inode(RootInode)
	if err != nil {
		return nil, err
	}
	if clean == "/" {
		return cur, nil
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	if len(parts) > maxPathDepth {
		return nil, fmt.Errorf("path %q: too deep", p)
	}
	for i, name := range parts {
		if !cur.IsDir() {
			return nil, fmt.Errorf("%s: not a directory", "/"+strings.Join(parts[:i], "/"))
		}
		ents, err := fs.ReadDir(cur)
		if err != nil {
			return nil, err
		}
		var next uint32
		for _, e := range ents {
			if e.Name == name {
				next = e.Inode
				break
			}
		}
		if next == 0 {
			return nil, fmt.Errorf("%s: %w", "/"+strings.Join(parts[:i+1], "/"), ErrNotFound)
		}
		if cur, err = fs.Inode(next); err != nil {
			return nil, err
		}
		if cur.Mode&modeType == ModeSymlink && i < len(parts)-1 {
			return nil, fmt.Errorf("%s is a symlink: not followed", "/"+strings.Join(parts[:i+1], "/"))
		}
	}
	return cur, nil
}
