package memio

import "errors"

// Bytes is an io.ReaderAt over a byte slice that, unlike bytes.Reader,
// refuses reads starting outside it and reports short reads as errors, as
// a disk or a mapping would.
type Bytes []byte

// ErrOutside is returned for a read that starts outside the bytes.
var ErrOutside = errors.New("memio: read outside the bytes")

// ErrShort is returned for a read that runs past the end.
var ErrShort = errors.New("memio: short read")

// ReadAt implements io.ReaderAt.
func (b Bytes) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(b)) {
		return 0, ErrOutside
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, ErrShort
	}
	return n, nil
}
