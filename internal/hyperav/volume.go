package hyperav

import (
	"errors"
	"fmt"
	"io"

	"secaas/internal/disk"
	"secaas/internal/ext4"
	"secaas/internal/ntfs"
)

// Volume is a file system on a disk (whole disk or one partition): ext4
// (ext2, ext3) or NTFS.
type Volume struct {
	Disk      io.ReaderAt
	Offset    int64 // of the file system in the disk
	Partition int   // 0: the whole disk
	FS        FileSystem
}

// FileSystem is what HyperAV needs of a file system: where a regular
// file's data is, and its bytes.
type FileSystem interface {
	// Type names the file system ("ext4", "ntfs").
	Type() string
	// Locate finds a regular file by absolute path.
	Locate(path string) (*File, error)
	// ReadFile returns the whole content of a located file (bounded).
	ReadFile(f *File) ([]byte, error)
}

// File is a located regular file.
type File struct {
	ID      uint64  // inode or MFT record number
	Size    int64   // bytes
	Extents []Range // where its data is, in bytes from the file system's start, in file order
	// Inline: the data is stored in the file system's metadata (ext4
	// inline data, an NTFS resident attribute): the chunks that the lookup
	// read hold it.
	Inline bool
	handle any
}

// openFS recognizes the file system at the start of r.
func openFS(r io.ReaderAt) (FileSystem, error) {
	fs, err := ext4.Open(r)
	if err == nil {
		return ext4FS{fs}, nil
	}
	if nfs, nerr := openNTFS(r); nerr == nil {
		return nfs, nil
	}
	return nil, err
}

// OpenVolume finds the file system (ext4 or NTFS) on a disk: in partition
// part (1-based), or, with part 0, on the whole disk or else in the first
// partition that holds one.
func OpenVolume(d io.ReaderAt, size int64, part int) (*Volume, error) {
	ps, err := disk.Partitions(d, size)
	if err != nil {
		return nil, err
	}
	if part > 0 {
		for _, p := range ps {
			if p.Index == part {
				fs, err := openFS(p.Section(d))
				if err != nil {
					return nil, fmt.Errorf("partition %d: %w", part, err)
				}
				return &Volume{Disk: d, Offset: p.Start, Partition: part, FS: fs}, nil
			}
		}
		return nil, fmt.Errorf("no partition %d (the disk has %d)", part, len(ps))
	}
	if fs, err := openFS(d); err == nil {
		return &Volume{Disk: d, FS: fs}, nil
	}
	for _, p := range ps {
		if fs, err := openFS(p.Section(d)); err == nil {
			return &Volume{Disk: d, Offset: p.Start, Partition: p.Index, FS: fs}, nil
		}
	}
	return nil, errors.New("no ext4 or NTFS file system on the disk or in its partitions")
}

// Range is a run of disk bytes.
type Range struct {
	Start int64 `json:"start"`
	Len   int64 `json:"len"`
}

// FileMap is where a file's data is on the disk.
type FileMap struct {
	Path   string  `json:"path"`
	Inode  uint64  `json:"inode"` // inode or MFT record number
	Size   int64   `json:"size"`
	Ranges []Range `json:"ranges"` // disk byte ranges, in file order
	Inline bool    `json:"inline,omitempty"`
}

// Locate maps a path to its file and disk ranges.
func (v *Volume) Locate(path string) (*FileMap, *File, error) {
	f, err := v.FS.Locate(path)
	if err != nil {
		return nil, nil, err
	}
	m := &FileMap{Path: path, Inode: f.ID, Size: f.Size, Inline: f.Inline}
	for _, e := range f.Extents {
		m.Ranges = appendRange(m.Ranges, Range{Start: v.Offset + e.Start, Len: e.Len})
	}
	return m, f, nil
}

// ReadFile returns a located file's content.
func (v *Volume) ReadFile(f *File) ([]byte, error) { return v.FS.ReadFile(f) }

// ext4FS is ext4 (and ext2, ext3) as a FileSystem.
type ext4FS struct{ fs *ext4.FS }

func (e ext4FS) Type() string { return "ext4" }

func (e ext4FS) Locate(path string) (*File, error) {
	ino, err := e.fs.Lookup(path)
	if err != nil {
		return nil, err
	}
	if !ino.IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	exts, err := e.fs.Extents(ino)
	if err != nil {
		return nil, err
	}
	f := &File{ID: uint64(ino.Num), Size: ino.Size, handle: ino}
	for _, x := range exts {
		if !x.Unwritten {
			f.Extents = append(f.Extents, Range{Start: x.Physical, Len: x.Len})
		}
	}
	// Inline data lives in the inode, whose block the lookup read.
	f.Inline = ino.Size > 0 && len(exts) == 0
	return f, nil
}

func (e ext4FS) ReadFile(f *File) ([]byte, error) { return e.fs.ReadFile(f.handle.(*ext4.Inode)) }

// recorder counts the bytes read from a disk and, while recording, keeps
// the ranges read: the metadata a lookup depended on.
type recorder struct {
	r         io.ReaderAt
	n         int64
	recording bool
	ranges    []Range
}

func (c *recorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	if c.recording && n > 0 {
		c.ranges = append(c.ranges, Range{off, int64(n)})
	}
	return n, err
}

// ntfsFS is NTFS as a FileSystem.
type ntfsFS struct{ fs *ntfs.FS }

func openNTFS(r io.ReaderAt) (FileSystem, error) {
	fs, err := ntfs.Open(r)
	if err != nil {
		return nil, err
	}
	return ntfsFS{fs}, nil
}

func (n ntfsFS) Type() string { return "ntfs" }

func (n ntfsFS) Locate(path string) (*File, error) {
	nf, err := n.fs.Lookup(path)
	if err != nil {
		return nil, err
	}
	f := &File{ID: nf.Record, Size: nf.Size, Inline: nf.Resident && nf.Size > 0, handle: nf}
	for _, e := range nf.Extents {
		f.Extents = append(f.Extents, Range{Start: e.Start, Len: e.Len})
	}
	return f, nil
}

func (n ntfsFS) ReadFile(f *File) ([]byte, error) { return n.fs.ReadFile(f.handle.(*ntfs.File)) }
