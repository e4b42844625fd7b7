package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"secaas/internal/elfreloc"
)

// TestKmonRelocate: the offline relocation writes each section's bytes
// and the layout, the same as the engine; a missing symbol or a bad base
// is a clear error.
func TestKmonRelocate(t *testing.T) {
	dir := t.TempDir()
	obj := "../elfreloc/testdata/seed-calls.o"
	syms := filepath.Join(dir, "kallsyms")
	os.WriteFile(syms, []byte("ffffffff81000100 T printk\nffffffff81000200 T __kmalloc\nffffffff81000300 T kfree\nffffffff82000000 D jiffies\n"), 0o644)
	out := filepath.Join(dir, "out")
	res, code := runCLI(t, "kmon", "relocate", "--object", obj, "--base", "0xffffffffc0010000", "--symbols", syms, "--out", out)
	if code != 0 || !strings.Contains(res, "sections") {
		t.Fatalf("relocate (%d): %s", code, res)
	}
	b, _ := os.ReadFile(obj)
	im, err := elfreloc.Relocate(b, 0xffffffffc0010000, elfreloc.Symbols{"printk": 0xffffffff81000100, "__kmalloc": 0xffffffff81000200,
		"kfree": 0xffffffff81000300, "jiffies": 0xffffffff82000000})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range im.Sections {
		got, err := os.ReadFile(filepath.Join(out, s.Name+".bin"))
		if err != nil || !bytes.Equal(got, s.Data) {
			t.Fatalf("%s.bin: %v", s.Name, err)
		}
	}
	var layout elfreloc.Image
	lb, _ := os.ReadFile(filepath.Join(out, "layout.json"))
	if err := json.Unmarshal(lb, &layout); err != nil || len(layout.Sections) != len(im.Sections) || layout.Symbols["monitor_entry"] == 0 {
		t.Fatalf("layout: %v %s", err, lb)
	}
	os.WriteFile(syms, []byte("ffffffff81000100 T printk\n"), 0o644)
	if res, code := runCLI(t, "kmon", "relocate", "--object", obj, "--base", "0xffffffffc0010000", "--symbols", syms, "--out", out); code == 0 || !strings.Contains(res, "kfree") {
		t.Fatalf("missing symbols (%d): %s", code, res)
	}
	if res, code := runCLI(t, "kmon", "relocate", "--object", obj, "--base", "nothex", "--symbols", syms, "--out", out); code != 2 {
		t.Fatalf("bad base (%d): %s", code, res)
	}
}
