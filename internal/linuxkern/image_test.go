package linuxkern_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"secaas/internal/lab/labtest"
	"secaas/internal/linuxkern"
)

// TestLoadImage unpacks Debian's own kernels (XZ for the generic flavour,
// LZ4 for the cloud one); a truncated or damaged image is ErrNotImage,
// never a panic.
func TestLoadImage(t *testing.T) {
	ms, _ := filepath.Glob("../../.cache/guest/*/vmlinuz")
	if len(ms) == 0 {
		labtest.Missing(t, "no cached guest kernel: run scripts/guest-kernel.sh")
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := linuxkern.LoadImage(b); err != nil {
			t.Errorf("%s: %v", m, err)
		}
		for name, bad := range map[string][]byte{
			"truncated": b[:len(b)/2],
			"damaged":   damage(b),
			"empty":     nil,
		} {
			if _, err := linuxkern.LoadImage(bad); !errors.Is(err, linuxkern.ErrNotImage) {
				t.Errorf("%s, %s: %v", m, name, err)
			}
		}
	}
}

// damage flips bytes across the middle of a copy of b (the payload).
func damage(b []byte) []byte {
	c := append([]byte(nil), b...)
	for i := len(c) / 3; i < len(c)/3+4096 && i < len(c); i += 7 {
		c[i] ^= 0x5a
	}
	return c
}

// FuzzLoadImage: whatever the bytes, LoadImage ends with an image or an
// error.
func FuzzLoadImage(f *testing.F) {
	f.Add([]byte("\x7fELF"))
	hdr := make([]byte, 0x300)
	copy(hdr[0x202:], "HdrS")
	hdr[0x1f1] = 1
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		linuxkern.LoadImage(b)
	})
}
