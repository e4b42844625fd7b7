package hyperav

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"sync"
	"time"

	"secaas/internal/av"
	"secaas/internal/hostpath"
)

// Sector states.
const (
	Clean    = "CLEAN"
	Written  = "WRITTEN"
	Infected = "INFECTED"
)

// Bitmap is a set of chunk indices.
type Bitmap []uint64

func newBitmap(n int64) Bitmap { return make(Bitmap, (n+63)/64) }

// Set marks chunk i.
func (b Bitmap) Set(i int64) { b[i/64] |= 1 << (i % 64) }

// Clear unmarks chunk i.
func (b Bitmap) Clear(i int64) { b[i/64] &^= 1 << (i % 64) }

// Has tells whether chunk i is marked.
func (b Bitmap) Has(i int64) bool { return b[i/64]&(1<<(i%64)) != 0 }

// Count is the number of marked chunks.
func (b Bitmap) Count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// FileRecord is the last scan of a file.
type FileRecord struct {
	Inode    uint64    `json:"inode"` // inode or MFT record number
	Size     int64     `json:"size"`
	Ranges   []Range   `json:"ranges"`
	Meta     []Range   `json:"meta"` // inode, directory and extent blocks the lookup read
	Verdict  string    `json:"verdict"`
	Engines  av.Report `json:"engines"`
	Scanned  time.Time `json:"scanned"`
	Isolated bool      `json:"isolated,omitempty"`
}

// State is the sector state of one VM disk: which chunks were written
// since they were last scanned, which are infected, and the last verdict
// of each scanned file. Persisted compactly (gzip'd bitmaps).
type State struct {
	mu          sync.Mutex
	Granularity int64 // bytes per chunk
	DiskSize    int64
	written     Bitmap
	infected    Bitmap
	files       map[string]FileRecord
	path        string // where Save writes ("" = memory only)
	// Tracking: writes to this disk have been tracked (bitmap mode); a
	// dirty bitmap missing from QEMU later means writes went unrecorded.
	Tracking bool
}

// DefaultGranularity is one 4 KiB block per bit.
const DefaultGranularity = 4096

// NewState starts the state of a disk with every chunk WRITTEN: nothing
// has been scanned yet.
func NewState(diskSize, granularity int64) (*State, error) {
	if granularity <= 0 || granularity&(granularity-1) != 0 || granularity < 512 {
		return nil, fmt.Errorf("granularity %d must be a power of two >= 512", granularity)
	}
	if diskSize <= 0 || diskSize > 1<<50 {
		return nil, fmt.Errorf("disk size %d", diskSize)
	}
	n := (diskSize + granularity - 1) / granularity
	s := &State{Granularity: granularity, DiskSize: diskSize, written: newBitmap(n), infected: newBitmap(n), files: map[string]FileRecord{}}
	s.MarkAllWritten()
	return s, nil
}

func (s *State) chunks() int64 { return (s.DiskSize + s.Granularity - 1) / s.Granularity }

// MarkWritten records a guest write of n bytes at off. The chunks'
// content changed: an INFECTED chunk becomes WRITTEN (and, in front mode,
// readable again) until its file is scanned again.
func (s *State) MarkWritten(off, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.each(Range{off, n}, func(c int64) {
		s.written.Set(c)
		s.infected.Clear(c)
	})
}

// Isolated returns the parts of [off, off+n) in INFECTED chunks: what the
// front makes read as zeros.
func (s *State) Isolated(off, n int64) []Range {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Range
	s.each(Range{off, n}, func(c int64) {
		if !s.infected.Has(c) {
			return
		}
		out = appendRange(out, Range{c * s.Granularity, s.Granularity})
	})
	return out
}

// MarkAllWritten treats every chunk as written (e.g. after QEMU reports an
// inconsistent dirty bitmap: a crash may have lost writes).
func (s *State) MarkAllWritten() {
	for i := range s.written {
		s.written[i] = ^uint64(0)
	}
}

func (s *State) each(r Range, f func(int64)) {
	if r.Len <= 0 || r.Start >= s.DiskSize || r.Start < 0 {
		return
	}
	end := min(r.Start+r.Len, s.DiskSize)
	for c := r.Start / s.Granularity; c*s.Granularity < end; c++ {
		f(c)
	}
}

// ChunkState is the state of the chunk holding byte off.
func (s *State) ChunkState(off int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := off / s.Granularity
	switch {
	case off < 0 || off >= s.DiskSize:
		return ""
	case s.infected.Has(c):
		return Infected
	case s.written.Has(c):
		return Written
	}
	return Clean
}

// Changed tells whether any chunk of the ranges was written since the
// file's last scan.
func (s *State) changed(rs []Range) bool {
	hit := false
	for _, r := range rs {
		s.each(r, func(c int64) { hit = hit || s.written.Has(c) })
	}
	return hit
}

// Counts is the number of chunks per state.
func (s *State) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	inf := s.infected.Count()
	wr := 0
	for i := range s.written {
		wr += bits.OnesCount64(s.written[i] &^ s.infected[i])
	}
	return map[string]int{Infected: inf, Written: wr, Clean: int(s.chunks()) - inf - wr}
}

// InfectedRanges returns the infected chunks as disk byte ranges.
func (s *State) InfectedRanges() []Range {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Range
	for c := int64(0); c < s.chunks(); c++ {
		if !s.infected.Has(c) {
			continue
		}
		out = appendRange(out, Range{c * s.Granularity, s.Granularity})
	}
	return out
}

// appendRange appends r to sorted ranges, merging it with the last one
// when they touch.
func appendRange(out []Range, r Range) []Range {
	if n := len(out); n > 0 && out[n-1].Start+out[n-1].Len == r.Start {
		out[n-1].Len += r.Len
		return out
	}
	return append(out, r)
}

// Files returns the file records.
func (s *State) Files() map[string]FileRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]FileRecord, len(s.files))
	for k, v := range s.files {
		out[k] = v
	}
	return out
}

// stateFile is the persisted form.
type stateFile struct {
	Version     int                   `json:"version"`
	Granularity int64                 `json:"granularity"`
	DiskSize    int64                 `json:"disk_size"`
	Written     []uint64              `json:"written"`
	Infected    []uint64              `json:"infected"`
	Files       map[string]FileRecord `json:"files"`
	Tracking    bool                  `json:"tracking"`
}

// LoadState reads a state saved by Save, or starts a new one at path if
// none exists.
func LoadState(path string, diskSize, granularity int64) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		s, err := NewState(diskSize, granularity)
		if err != nil {
			return nil, err
		}
		s.path = path
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	var f stateFile
	if err := json.NewDecoder(io.LimitReader(zr, 1<<30)).Decode(&f); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	s, err := NewState(f.DiskSize, f.Granularity)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	if f.DiskSize != diskSize {
		return nil, fmt.Errorf("state %s is for a %d-byte disk, this one has %d bytes", path, f.DiskSize, diskSize)
	}
	if len(f.Written) != len(s.written) || len(f.Infected) != len(s.infected) {
		return nil, fmt.Errorf("state %s: bitmap sizes do not match the disk", path)
	}
	copy(s.written, f.Written)
	copy(s.infected, f.Infected)
	if f.Files != nil {
		s.files = f.Files
	}
	s.Tracking = f.Tracking
	s.path = path
	return s, nil
}

// Save writes the state atomically (temporary file, fsync, rename).
func (s *State) Save() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	f := stateFile{Version: 1, Granularity: s.Granularity, DiskSize: s.DiskSize, Written: s.written, Infected: s.infected, Files: s.files, Tracking: s.Tracking}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	err := json.NewEncoder(zw).Encode(f)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return hostpath.WriteFileAtomic(s.path, buf.Bytes())
}
