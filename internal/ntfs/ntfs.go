package ntfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	parser "www.velocidex.com/golang/go-ntfs/parser"
)

// MaxFileSize bounds ReadFile.
const MaxFileSize = 1 << 30

// Attribute flags of $DATA.
const (
	flagCompressed = 1 << 0
	flagEncrypted  = 1 << 14
)

// FS is an open NTFS file system.
type FS struct {
	ctx         *parser.NTFSContext
	ClusterSize int64
}

// File is a regular file's unnamed data stream.
type File struct {
	Record   uint64
	Size     int64
	Resident bool
	Extents  []Extent // non-resident: where the data is, in bytes from the volume's start, in file order
	entry    *parser.MFT_ENTRY
}

// Extent is a run of the volume's bytes.
type Extent struct{ Start, Len int64 }

// guard turns a panic of the parser into an error.
func guard(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("ntfs: %s: malformed file system (%v)", what, r)
	}
}

// Open reads the boot sector and bootstraps the MFT.
func Open(r io.ReaderAt) (fs *FS, err error) {
	defer guard("open", &err)
	var sig [8]byte
	if _, err := r.ReadAt(sig[:], 3); err != nil || string(sig[:]) != "NTFS    " {
		return nil, errors.New("ntfs: no NTFS boot sector")
	}
	ctx, err := parser.GetNTFSContext(r, 0)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	if ctx.ClusterSize <= 0 || ctx.ClusterSize > 2<<20 {
		return nil, fmt.Errorf("ntfs: cluster size %d", ctx.ClusterSize)
	}
	return &FS{ctx: ctx, ClusterSize: ctx.ClusterSize}, nil
}

// Lookup finds a regular file by absolute path ("/dir/file"; NTFS names
// compare case-insensitively).
func (fs *FS) Lookup(path string) (f *File, err error) {
	defer guard("lookup "+path, &err)
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("ntfs: %q is not an absolute path", path)
	}
	root, err := fs.ctx.GetMFT(5)
	if err != nil {
		return nil, fmt.Errorf("ntfs: root directory: %w", err)
	}
	entry, err := root.Open(fs.ctx, path)
	if err != nil {
		return nil, fmt.Errorf("ntfs: %s: %w", path, os.ErrNotExist)
	}
	if entry.IsDir(fs.ctx) {
		return nil, fmt.Errorf("ntfs: %s is a directory", path)
	}
	vcns := parser.GetAllVCNs(fs.ctx, entry, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
	if len(vcns) == 0 {
		return nil, fmt.Errorf("ntfs: %s has no data stream", path)
	}
	f = &File{Record: uint64(entry.Record_number()), entry: entry}
	first := vcns[0]
	if flags := uint64(*first.Flags()); flags&(flagCompressed|flagEncrypted) != 0 {
		return nil, fmt.Errorf("ntfs: %s is compressed or encrypted (flags %#x): its clusters do not hold its bytes", path, flags)
	}
	if first.IsResident() {
		f.Resident, f.Size = true, first.DataSize()
		return f, nil
	}
	f.Size = int64(first.Actual_size())
	if f.Size < 0 || f.Size > 1<<50 {
		return nil, fmt.Errorf("ntfs: %s: size %d", path, f.Size)
	}
	// Runs in VCN order; a run without an offset is sparse (reads as
	// zeros, no clusters). The extents stop at the file's size.
	var next uint64
	left := f.Size
	for _, a := range sortByVCN(vcns) {
		if a.Runlist_vcn_start() != next {
			return nil, fmt.Errorf("ntfs: %s: run list resumes at VCN %d, want %d", path, a.Runlist_vcn_start(), next)
		}
		for _, run := range a.RunList() {
			if run.Length <= 0 || run.Offset < 0 || run.Length > (1<<50)/fs.ClusterSize || run.Offset > (1<<50)/fs.ClusterSize {
				return nil, fmt.Errorf("ntfs: %s: run of %d clusters at %d", path, run.Length, run.Offset)
			}
			next += uint64(run.Length)
			n := min(run.Length*fs.ClusterSize, left)
			if n > 0 && run.RelativeUrnOffset != 0 {
				f.Extents = appendExtent(f.Extents, Extent{run.Offset * fs.ClusterSize, n})
			}
			left -= n
		}
	}
	if left > 0 {
		return nil, fmt.Errorf("ntfs: %s: its run lists cover %d of its %d bytes", path, f.Size-left, f.Size)
	}
	return f, nil
}

func appendExtent(out []Extent, e Extent) []Extent {
	if n := len(out); n > 0 && out[n-1].Start+out[n-1].Len == e.Start {
		out[n-1].Len += e.Len
		return out
	}
	return append(out, e)
}

func sortByVCN(as []*parser.NTFS_ATTRIBUTE) []*parser.NTFS_ATTRIBUTE {
	out := append([]*parser.NTFS_ATTRIBUTE(nil), as...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Runlist_vcn_start() < out[j-1].Runlist_vcn_start(); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ReadFile returns the file's content.
func (fs *FS) ReadFile(f *File) (data []byte, err error) {
	defer guard("read", &err)
	if f.Size > MaxFileSize {
		return nil, fmt.Errorf("ntfs: file of %d bytes (limit %d)", f.Size, MaxFileSize)
	}
	st, err := parser.OpenStream(fs.ctx, f.entry, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
	if err != nil {
		return nil, fmt.Errorf("ntfs: %w", err)
	}
	data = make([]byte, f.Size)
	n, err := st.ReadAt(data, 0)
	if int64(n) < f.Size {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("ntfs: read %d of %d bytes: %w", n, f.Size, err)
	}
	return data, nil
}
