package av

import (
	"crypto/md5"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed signatures/*.ndb signatures/*.yar
var builtin embed.FS

// TestFilesDir is where Debian's clamav-testfiles package puts its files.
const TestFilesDir = "/usr/share/clamav-testfiles"

// WriteDatabase fills dir with the built-in signatures, an .hdb of every
// file in TestFilesDir (if installed) and the signature files of extra (a
// directory of .ndb/.hdb/.yar files; "" for none). It returns the number
// of signature files written.
func WriteDatabase(dir, extra string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	n := 0
	err := fs.WalkDir(builtin, "signatures", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := builtin.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		return os.WriteFile(filepath.Join(dir, d.Name()), b, 0o644)
	})
	if err != nil {
		return n, err
	}
	if ents, err := os.ReadDir(TestFilesDir); err == nil {
		var lines []string
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(TestFilesDir, e.Name()))
			if err != nil || len(b) == 0 {
				continue
			}
			sum := md5.Sum(b)
			lines = append(lines, fmt.Sprintf("%s:%d:Secaas.TestFile.%s", hex.EncodeToString(sum[:]), len(b), sanitize(e.Name())))
		}
		sort.Strings(lines)
		if err := os.WriteFile(filepath.Join(dir, "testfiles.hdb"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return n, err
		}
		n++
	}
	if extra != "" {
		ents, err := os.ReadDir(extra)
		if err != nil {
			return n, fmt.Errorf("signatures: %w", err)
		}
		for _, e := range ents {
			switch filepath.Ext(e.Name()) {
			case ".ndb", ".hdb", ".hsb", ".ldb", ".yar", ".yara":
			default:
				continue
			}
			b, err := os.ReadFile(filepath.Join(extra, e.Name()))
			if err != nil {
				return n, err
			}
			if err := os.WriteFile(filepath.Join(dir, "extra-"+e.Name()), b, 0o644); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
