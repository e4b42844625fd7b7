package hyperav

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"secaas/internal/av"
)

// ScanResult is the answer for one file.
type ScanResult struct {
	Path      string    `json:"path"`
	Size      int64     `json:"size"`
	Ranges    []Range   `json:"ranges,omitempty"`
	Verdict   string    `json:"verdict"`
	Cached    bool      `json:"cached"`          // answered from the last scan
	BytesRead int64     `json:"bytes_read"`      // from the disk, for this answer
	DataRead  int64     `json:"data_bytes_read"` // of the file's own data
	Engines   av.Report `json:"engines"`
	TookMS    float64   `json:"took_ms"`
}

// Scanner answers "is this file infected?" for one disk.
type Scanner struct {
	Disk      io.ReaderAt // the disk's current contents (image, NBD export)
	Partition int         // 0: find the ext4 file system
	State     *State
	AV        *av.Scanner
}

// ScanFile returns a file's verdict, reading as little as the changes
// since its last scan allow:
//
//   - no chunk its last answer depended on (its data, and the inode,
//     directory and extent blocks that located it) was written: the cached
//     verdict, and not a byte is read;
//   - only metadata chunks were written (a neighbour's inode, a new entry
//     in its directory): the file is located again, and if it is the same
//     inode with the same size and data ranges, none of them written, the
//     cached verdict — having read metadata only, none of the file's data;
//   - otherwise the file is rebuilt from the disk and scanned by every
//     engine; an infected file's chunks become INFECTED, a clean file's
//     CLEAN.
func (s *Scanner) ScanFile(ctx context.Context, path string) (*ScanResult, error) {
	t0 := time.Now()
	st := s.State
	st.mu.Lock()
	rec, seen := st.files[path]
	dataSame := seen && rec.Verdict != "" && len(rec.Meta) > 0 && !st.changed(rec.Ranges)
	fresh := dataSame && !st.changed(rec.Meta)
	st.mu.Unlock()
	if fresh {
		return &ScanResult{Path: path, Size: rec.Size, Ranges: rec.Ranges, Verdict: rec.Verdict, Cached: true, Engines: rec.Engines,
			TookMS: float64(time.Since(t0).Microseconds()) / 1000}, nil
	}
	rd := &recorder{r: s.Disk}
	v, err := OpenVolume(rd, st.DiskSize, s.Partition)
	if err != nil {
		return nil, err
	}
	// Superblock and group descriptors change with every allocation; the
	// lookup itself depends on what is read from here on.
	rd.recording = true
	m, ino, err := v.Locate(path)
	rd.recording = false
	if err != nil {
		return nil, err
	}
	meta := rd.ranges
	if dataSame && rec.Inode == m.Inode && rec.Size == m.Size && slices.Equal(rec.Ranges, m.Ranges) && !m.Inline {
		st.mu.Lock()
		for _, r := range meta {
			st.each(r, st.written.Clear)
		}
		rec.Meta = coalesce(meta, st.Granularity)
		st.files[path] = rec
		st.mu.Unlock()
		if err := st.Save(); err != nil {
			return nil, fmt.Errorf("save state: %w", err)
		}
		return &ScanResult{Path: path, Size: rec.Size, Ranges: rec.Ranges, Verdict: rec.Verdict, Cached: true, Engines: rec.Engines,
			BytesRead: rd.n, TookMS: float64(time.Since(t0).Microseconds()) / 1000}, nil
	}
	before := rd.n
	data, err := v.ReadFile(ino)
	if err != nil {
		return nil, err
	}
	rep := s.AV.Scan(ctx, data)
	res := &ScanResult{Path: path, Size: m.Size, Ranges: m.Ranges, Verdict: string(rep.Verdict), BytesRead: rd.n, DataRead: rd.n - before, Engines: rep}
	st.mu.Lock()
	if rep.Verdict != av.Error {
		for _, r := range m.Ranges {
			st.each(r, st.written.Clear)
			if rep.Verdict == av.Infected {
				st.each(r, st.infected.Set)
			} else {
				st.each(r, st.infected.Clear)
			}
		}
		for _, r := range meta {
			st.each(r, st.written.Clear)
		}
		st.files[path] = FileRecord{Inode: m.Inode, Size: m.Size, Ranges: m.Ranges, Meta: coalesce(meta, st.Granularity), Verdict: string(rep.Verdict), Engines: rep, Scanned: time.Now().UTC()}
		if m.Inline { // data inside the inode: its block is in meta
			rec := st.files[path]
			rec.Ranges = nil
			st.files[path] = rec
		}
	}
	st.mu.Unlock()
	if err := st.Save(); err != nil {
		return res, fmt.Errorf("save state: %w", err)
	}
	res.TookMS = float64(time.Since(t0).Microseconds()) / 1000
	return res, nil
}

// coalesce rounds ranges out to whole chunks and merges them.
func coalesce(rs []Range, g int64) []Range {
	chunks := map[int64]bool{}
	for _, r := range rs {
		for c := r.Start / g; c*g < r.Start+r.Len; c++ {
			chunks[c] = true
		}
	}
	keys := slices.Sorted(maps.Keys(chunks))
	var out []Range
	for _, c := range keys {
		out = appendRange(out, Range{c * g, g})
	}
	return out
}
