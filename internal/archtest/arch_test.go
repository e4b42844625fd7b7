package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func goDirs(t *testing.T) []string {
	var dirs []string
	for _, root := range []string{"../../internal", "../../cmd"} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() == "testdata" {
				return err
			}
			ms, _ := filepath.Glob(filepath.Join(p, "*.go"))
			for _, m := range ms {
				if !strings.HasSuffix(m, "_test.go") {
					dirs = append(dirs, p)
					break
				}
			}
			return nil
		})
	}
	if len(dirs) < 5 {
		t.Fatalf("found only %v", dirs)
	}
	return dirs
}

func TestEveryPackageHasDocGo(t *testing.T) {
	for _, d := range goDirs(t) {
		if strings.Contains(d, "/cmd/") {
			continue // commands document themselves in main.go
		}
		if _, err := os.Stat(filepath.Join(d, "doc.go")); err != nil {
			t.Errorf("%s has no doc.go", d)
		}
	}
}

// Analysis packages do no I/O: they must not import the I/O packages.
func TestAnalysisPackagesDoNoIO(t *testing.T) {
	forbidden := []string{"os/exec", "net/http", "database/sql", "secaas/internal/ovs", "secaas/internal/store", "secaas/internal/lab"}
	for _, pkg := range []string{"../../internal/tenant", "../../internal/flow"} {
		fset := token.NewFileSet()
		ms, _ := filepath.Glob(filepath.Join(pkg, "*.go"))
		for _, m := range ms {
			if strings.HasSuffix(m, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, m, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, im := range f.Imports {
				for _, bad := range forbidden {
					if strings.Trim(im.Path.Value, `"`) == bad {
						t.Errorf("%s imports %s", m, bad)
					}
				}
			}
		}
	}
}
