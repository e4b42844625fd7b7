package capture

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Writer writes a classic pcap file (little-endian, nanosecond timestamps).
type Writer struct {
	w   io.Writer
	hdr [16]byte
}

// NewWriter writes the file header for linkType.
func NewWriter(w io.Writer, linkType int) (*Writer, error) {
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], MaxPacket)
	binary.LittleEndian.PutUint32(h[20:], uint32(linkType))
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WritePacket appends one packet captured at ts (ns since the epoch).
func (w *Writer) WritePacket(ts int64, data []byte) error {
	if len(data) > MaxPacket {
		return fmt.Errorf("pcap: packet of %d bytes exceeds %d", len(data), MaxPacket)
	}
	binary.LittleEndian.PutUint32(w.hdr[0:], uint32(ts/1e9))
	binary.LittleEndian.PutUint32(w.hdr[4:], uint32(ts%1e9))
	binary.LittleEndian.PutUint32(w.hdr[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(w.hdr[12:], uint32(len(data)))
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return err
	}
	_, err := w.w.Write(data)
	return err
}
