package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// jbd2 constants (all journal fields are big-endian).
const (
	jbdMagic        = 0xc03b3998
	jbdDescriptor   = 1
	jbdCommit       = 2
	jbdSuperblockV1 = 3
	jbdSuperblockV2 = 4
	jbdRevoke       = 5

	jbdFeatRevoke = 0x1
	jbdFeat64bit  = 0x2
	jbdFeatCsumV2 = 0x8
	jbdFeatCsumV3 = 0x10

	tagEscape   = 1
	tagSameUUID = 2
	tagLastTag  = 8

	compatHasJournal = 0x4
	incompatRecover  = 0x4
)

// maxJournalBlocks bounds a journal walk.
const maxJournalBlocks = 1 << 22

// overlay is a volume with committed journal blocks laid over it: what the
// file system will look like once the journal is replayed (the guest
// replays it at its next mount; a running guest checkpoints it lazily, so
// a live disk's newest metadata is often only in the journal).
type overlay struct {
	r      io.ReaderAt
	bs     int64
	blocks map[uint64]int64 // file-system block -> byte offset of its newest copy in the journal
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		blk := uint64(pos / o.bs)
		in := pos % o.bs
		chunk := min(int64(len(p)-n), o.bs-in)
		src := pos
		if j, ok := o.blocks[blk]; ok {
			src = j + in
		}
		r, err := o.r.ReadAt(p[n:n+int(chunk)], src)
		n += r
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// replayJournal returns r with the journal's committed transactions laid
// over it, and how many blocks that replaced. It is called only when the
// superblock says the journal needs recovery.
func (fs *FS) replayJournal(journalInode uint32) (io.ReaderAt, int, error) {
	ino, err := fs.Inode(journalInode)
	if err != nil {
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	exts, err := fs.Extents(ino)
	if err != nil {
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	bs := fs.BlockSize
	// Journal block n -> byte offset in the volume.
	jpos := func(n uint64) (int64, bool) {
		off := int64(n) * bs
		for _, e := range exts {
			if off >= e.Logical && off < e.Logical+e.Len {
				return e.Physical + off - e.Logical, true
			}
		}
		return 0, false
	}
	be := binary.BigEndian
	read := func(n uint64) ([]byte, error) {
		at, ok := jpos(n)
		if !ok {
			return nil, fmt.Errorf("journal block %d is not mapped", n)
		}
		b := make([]byte, bs)
		if r, _ := fs.r.ReadAt(b, at); r < len(b) {
			return nil, fmt.Errorf("journal block %d truncated", n)
		}
		return b, nil
	}
	sb, err := read(0)
	if err != nil {
		return nil, 0, err
	}
	if be.Uint32(sb) != jbdMagic || (be.Uint32(sb[4:]) != jbdSuperblockV1 && be.Uint32(sb[4:]) != jbdSuperblockV2) {
		return nil, 0, errors.New("journal: bad superblock")
	}
	if int64(be.Uint32(sb[0xc:])) != bs {
		return nil, 0, fmt.Errorf("journal: block size %d, file system %d", be.Uint32(sb[0xc:]), bs)
	}
	maxlen, first := uint64(be.Uint32(sb[0x10:])), uint64(be.Uint32(sb[0x14:]))
	seq, start := be.Uint32(sb[0x18:]), uint64(be.Uint32(sb[0x1c:]))
	if start == 0 {
		return fs.r, 0, nil // clean: nothing to replay
	}
	if maxlen > maxJournalBlocks || first == 0 || first >= maxlen || start < first || start >= maxlen {
		return nil, 0, fmt.Errorf("journal: geometry first %d start %d maxlen %d", first, start, maxlen)
	}
	var incompat uint32
	if be.Uint32(sb[4:]) == jbdSuperblockV2 {
		incompat = be.Uint32(sb[0x28:])
	}
	tagSize := 8
	if incompat&jbdFeat64bit != 0 {
		tagSize = 12
	}
	if incompat&jbdFeatCsumV3 != 0 {
		tagSize = 16
	}
	tail := 0
	if incompat&(jbdFeatCsumV2|jbdFeatCsumV3) != 0 {
		tail = 4
	}
	next := func(n uint64) uint64 {
		n++
		if n >= maxlen {
			n = first
		}
		return n
	}

	type logged struct {
		fsBlock uint64
		jBlock  uint64
		escaped bool
		seq     uint32
	}
	revoked := map[uint64]uint32{}
	var writes []logged
	// One pass in log order: transactions count only once their commit
	// block is seen with the right sequence.
	pos := start
	var pending []logged
	pendingRevokes := map[uint64]uint32{}
	for steps := uint64(0); steps < maxlen; steps++ {
		b, err := read(pos)
		if err != nil {
			break
		}
		if be.Uint32(b) != jbdMagic || be.Uint32(b[8:]) != seq {
			break // end of the log
		}
		switch be.Uint32(b[4:]) {
		case jbdDescriptor:
			p := 12
			for p+tagSize <= len(b)-tail {
				t := b[p:]
				fsb := uint64(be.Uint32(t))
				var flags uint32
				if tagSize == 16 {
					flags = be.Uint32(t[4:])
					if incompat&jbdFeat64bit != 0 {
						fsb |= uint64(be.Uint32(t[8:])) << 32
					}
				} else {
					flags = uint32(be.Uint16(t[6:]))
					if tagSize == 12 {
						fsb |= uint64(be.Uint32(t[8:])) << 32
					}
				}
				pos = next(pos)
				pending = append(pending, logged{fsBlock: fsb, jBlock: pos, escaped: flags&tagEscape != 0, seq: seq})
				p += tagSize
				if flags&tagSameUUID == 0 {
					p += 16
				}
				if flags&tagLastTag != 0 {
					break
				}
			}
		case jbdRevoke:
			count := int(be.Uint32(b[12:]))
			if count > len(b) {
				count = len(b)
			}
			rs := 4
			if incompat&jbdFeat64bit != 0 {
				rs = 8
			}
			for p := 16; p+rs <= count; p += rs {
				var blk uint64
				if rs == 8 {
					blk = be.Uint64(b[p:])
				} else {
					blk = uint64(be.Uint32(b[p:]))
				}
				pendingRevokes[blk] = seq
			}
		case jbdCommit:
			writes = append(writes, pending...)
			for k, v := range pendingRevokes {
				revoked[k] = v
			}
			pending, pendingRevokes = nil, map[uint64]uint32{}
			seq++
		default:
			steps = maxlen // unknown block type: stop
		}
		pos = next(pos)
	}
	o := &overlay{r: fs.r, bs: bs, blocks: map[uint64]int64{}}
	var escaped []uint64
	for _, w := range writes {
		if r, ok := revoked[w.fsBlock]; ok && int32(w.seq-r) <= 0 {
			continue
		}
		if w.fsBlock >= fs.blocks {
			continue
		}
		at, ok := jpos(w.jBlock)
		if !ok {
			continue
		}
		o.blocks[w.fsBlock] = at
		if w.escaped {
			escaped = append(escaped, w.fsBlock)
		}
	}
	if len(escaped) > 0 {
		// An escaped block began with the journal magic, which the log
		// replaced by zeros: serve a restored copy.
		return &escapedOverlay{overlay: o, escaped: escaped}, len(o.blocks), nil
	}
	return o, len(o.blocks), nil
}

// escapedOverlay restores the magic of escaped journal copies.
type escapedOverlay struct {
	*overlay
	escaped []uint64
}

func (e *escapedOverlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := e.overlay.ReadAt(p, off)
	for _, blk := range e.escaped {
		start := int64(blk) * e.bs
		for i := int64(0); i < 4; i++ {
			if at := start + i - off; at >= 0 && at < int64(n) {
				p[at] = byte(uint32(jbdMagic) >> (24 - 8*i))
			}
		}
	}
	return n, err
}
