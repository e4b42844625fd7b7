package hyperav

import (
	"errors"
	"fmt"
	"io"

	"secaas/internal/disk"
	"secaas/internal/ext4"
)

// Volume is an ext4 file system on a disk (whole disk or one partition).
type Volume struct {
	Disk      io.ReaderAt
	Offset    int64 // of the file system in the disk
	Partition int   // 0: the whole disk
	FS        *ext4.FS
}

// OpenVolume finds the ext4 file system on a disk: in partition part
// (1-based), or, with part 0, on the whole disk or else in the first
// partition that holds one.
func OpenVolume(d io.ReaderAt, size int64, part int) (*Volume, error) {
	ps, err := disk.Partitions(d, size)
	if err != nil {
		return nil, err
	}
	if part > 0 {
		for _, p := range ps {
			if p.Index == part {
				fs, err := ext4.Open(p.Section(d))
				if err != nil {
					return nil, fmt.Errorf("partition %d: %w", part, err)
				}
				return &Volume{Disk: d, Offset: p.Start, Partition: part, FS: fs}, nil
			}
		}
		return nil, fmt.Errorf("no partition %d (the disk has %d)", part, len(ps))
	}
	if fs, err := ext4.Open(d); err == nil {
		return &Volume{Disk: d, FS: fs}, nil
	}
	for _, p := range ps {
		if fs, err := ext4.Open(p.Section(d)); err == nil {
			return &Volume{Disk: d, Offset: p.Start, Partition: p.Index, FS: fs}, nil
		}
	}
	return nil, errors.New("no ext4 file system on the disk or in its partitions")
}

// Range is a run of disk bytes.
type Range struct {
	Start int64 `json:"start"`
	Len   int64 `json:"len"`
}

// FileMap is where a file's data is on the disk.
type FileMap struct {
	Path   string  `json:"path"`
	Inode  uint32  `json:"inode"`
	Size   int64   `json:"size"`
	Ranges []Range `json:"ranges"` // disk byte ranges, in file order
	Inline bool    `json:"inline,omitempty"`
}

// Locate maps a path to its inode and disk ranges.
func (v *Volume) Locate(path string) (*FileMap, *ext4.Inode, error) {
	ino, err := v.FS.Lookup(path)
	if err != nil {
		return nil, nil, err
	}
	if !ino.IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", path)
	}
	exts, err := v.FS.Extents(ino)
	if err != nil {
		return nil, nil, err
	}
	m := &FileMap{Path: path, Inode: ino.Num, Size: ino.Size}
	for _, e := range exts {
		if !e.Unwritten {
			m.Ranges = append(m.Ranges, Range{Start: v.Offset + e.Physical, Len: e.Len})
		}
	}
	if ino.Size > 0 && len(exts) == 0 {
		// Inline data lives in the inode: map the inode table block
		// holding it is not exposed by ext4; treat the file as always
		// changed (it is tiny).
		m.Inline = true
	}
	return m, ino, nil
}

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
