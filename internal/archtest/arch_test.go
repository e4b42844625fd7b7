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
	for _, pkg := range []string{"../../internal/tenant", "../../internal/flow", "../../internal/elfreloc"} {
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

// imports returns the secaas packages a package's non-test files import.
func imports(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	ms, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if strings.HasSuffix(m, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, m, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			p := strings.Trim(im.Path.Value, `"`)
			if strings.HasPrefix(p, "secaas/") && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// The control plane (API, controller, store, and the contracts they share
// with the node) links nothing that runs on a hypervisor host: it reaches
// a node only through package node. Checked over the transitive imports.
func TestControlPlaneImportsNoNodeSide(t *testing.T) {
	nodeSide := []string{"agent", "hyperav", "ext4", "ntfs", "nbd", "qmp", "vhostuser", "disk", "av", "guestmem",
		"linuxkern", "vmi", "winkern", "capture", "ovs", "lab", "nad", "feature", "detect", "hostpath", "daemon", "bench"}
	for _, root := range []string{"controller", "api", "store", "node", "inventory", "tenant", "bus"} {
		seen := map[string]string{} // package -> who imported it
		queue := []string{"secaas/internal/" + root}
		seen[queue[0]] = ""
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, im := range imports(t, filepath.Join("../..", strings.TrimPrefix(p, "secaas/"))) {
				if _, ok := seen[im]; !ok {
					seen[im] = p
					queue = append(queue, im)
				}
			}
		}
		for _, bad := range nodeSide {
			if by, ok := seen["secaas/internal/"+bad]; ok {
				t.Errorf("the control plane package %s links the node-side package %s (imported by %s)", root, bad, by)
			}
		}
	}
}
