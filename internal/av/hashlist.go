package av

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// HashList is an engine that knows files by their SHA-256.
type HashList struct {
	bad map[[32]byte]string // hash -> name
}

// Name implements Engine.
func (h *HashList) Name() string { return "hashlist" }

// Len is the number of hashes known.
func (h *HashList) Len() int { return len(h.bad) }

// ParseHashList reads "SHA256 NAME" lines (sha256sum's format also works:
// the name may start with '*'); '#' starts a comment.
func ParseHashList(r io.Reader) (*HashList, error) {
	h := &HashList{bad: map[[32]byte]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		hexs, name, _ := strings.Cut(line, " ")
		name = strings.TrimLeft(strings.TrimSpace(name), "*")
		b, err := hex.DecodeString(hexs)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("hash list line %d: %q is not a SHA-256", n, hexs)
		}
		if name == "" {
			name = "hash:" + hexs[:12]
		}
		h.bad[[32]byte(b)] = name
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hash list: %w", err)
	}
	return h, nil
}

// Scan implements Engine.
func (h *HashList) Scan(_ context.Context, data []byte) (string, bool, error) {
	if name, ok := h.bad[sha256.Sum256(data)]; ok {
		return name, true, nil
	}
	return "", false, nil
}
