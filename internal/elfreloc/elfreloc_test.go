package elfreloc

import (
	"bytes"
	"debug/elf"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tools fails under CI, else skips, when gcc or ld is missing.
func tools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"gcc", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make test installs it)", tool)
			}
			t.Skipf("skipping: %s is missing", tool)
		}
	}
}

func compile(t *testing.T, src string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))+".o")
	if b, err := exec.Command("gcc", append(KernelCFlags, "-o", out, src)...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", src, err, b)
	}
	obj, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// undefined lists the object's undefined symbols.
func undefined(t *testing.T, obj []byte) []string {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	var out []string
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF && s.Name != "" {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out
}

// gnuLD links obj with GNU ld at the addresses of im's layout, with the
// same symbol values, and returns the linked ELF (or ld's complaint).
func gnuLD(t *testing.T, obj []byte, im *Image, syms Symbols) (*elf.File, error) {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.o")
	os.WriteFile(in, obj, 0o644)
	var script strings.Builder
	script.WriteString("SECTIONS {\n")
	for _, s := range im.Sections {
		fmt.Fprintf(&script, "  %s %#x : { *(%s) }\n", s.Name, s.Addr, s.Name)
	}
	script.WriteString("}\n")
	os.WriteFile(filepath.Join(dir, "link.ld"), []byte(script.String()), 0o644)
	args := []string{"-m", "elf_x86_64", "-static", "-nostdlib", "--no-relax", "-T", filepath.Join(dir, "link.ld"), "-o", filepath.Join(dir, "out"), in}
	for name, v := range syms {
		args = append(args, fmt.Sprintf("--defsym=%s=%#x", name, v))
	}
	if b, err := exec.Command("ld", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ld: %v: %s", err, b)
	}
	return elf.Open(filepath.Join(dir, "out"))
}

// kernelSymbols gives each name a value in the kernel text range.
func kernelSymbols(r *rand.Rand, names []string) Symbols {
	syms := Symbols{}
	for _, n := range names {
		syms[n] = 0xffffffff81000000 + uint64(r.IntN(0x2000000))&^0xf
	}
	return syms
}

// TestSameBytesAsGNULD: real objects compiled with gcc for the kernel
// code model, relocated by us and by GNU ld at the same addresses with
// the same symbol values, at several bases: every section's bytes and
// every global symbol's address are the same.
func TestSameBytesAsGNULD(t *testing.T) {
	tools(t)
	r := rand.New(rand.NewPCG(20, 2026))
	for _, src := range []string{"testdata/calls.c", "testdata/tables.c", "testdata/wide.S"} {
		obj := compile(t, src)
		for trial := 0; trial < 3; trial++ {
			base := 0xffffffffc0000000 + uint64(r.IntN(0x10000))<<12
			syms := kernelSymbols(r, undefined(t, obj))
			im, err := Relocate(obj, base, syms)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			f, err := gnuLD(t, obj, im, syms)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			relocs := 0
			for _, s := range im.Sections {
				ls := f.Section(s.Name)
				if ls == nil || ls.Addr != s.Addr || ls.Size != s.Size {
					t.Fatalf("%s: section %s: ld has %+v, we %#x+%d", src, s.Name, ls, s.Addr, s.Size)
				}
				want := make([]byte, ls.Size)
				if ls.Type != elf.SHT_NOBITS {
					if want, err = ls.Data(); err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(want, s.Data) {
					t.Fatalf("%s: section %s differs from GNU ld's at base %#x", src, s.Name, base)
				}
				relocs++
			}
			lsyms, _ := f.Symbols()
			for _, ls := range lsyms {
				if v, ok := im.Symbols[ls.Name]; ok && v != ls.Value {
					t.Fatalf("%s: symbol %s: ld %#x, we %#x", src, ls.Name, ls.Value, v)
				}
			}
			if relocs == 0 || len(im.Symbols) == 0 {
				t.Fatalf("%s: nothing compared", src)
			}
		}
	}
}

// TestOverflowAsGNULD: an R_X86_64_32 fits a low address (same bytes as
// ld) and overflows for a kernel address, where ld refuses too.
func TestOverflowAsGNULD(t *testing.T) {
	tools(t)
	obj := compile(t, "testdata/low32.S")
	low := Symbols{"low_symbol": 0x12345678}
	im, err := Relocate(obj, 0xffffffffc0001000, low)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gnuLD(t, obj, im, low)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := f.Section(".text").Data()
	if s, _ := im.Section(".text"); !bytes.Equal(s.Data, want) {
		t.Fatalf("low: %x vs ld %x", s.Data, want)
	}
	high := Symbols{"low_symbol": 0xffffffff81000000}
	if _, err := Relocate(obj, 0xffffffffc0001000, high); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("kernel address in R_X86_64_32: %v", err)
	}
	if _, err := gnuLD(t, obj, im, high); err == nil {
		t.Fatal("GNU ld took the overflow (the test is wrong)")
	}
	// A PC32 too far: the object in user space calling kernel symbols.
	calls := compile(t, "testdata/calls.c")
	syms := kernelSymbols(rand.New(rand.NewPCG(1, 1)), undefined(t, calls))
	if _, err := Relocate(calls, 0x7fff00000000, syms); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("a call 2^64-far: %v", err)
	}
}

// TestRefusals: what the engine must refuse, with a clear error.
func TestRefusals(t *testing.T) {
	tools(t)
	obj := compile(t, "testdata/calls.c")
	if _, err := Relocate(obj, 0xffffffffc0000000, Symbols{"printk": 0xffffffff81000000}); err == nil ||
		!strings.Contains(err.Error(), "__kmalloc") || !strings.Contains(err.Error(), "kfree") {
		t.Fatalf("missing symbols: %v", err)
	}
	if _, err := Relocate([]byte("not an elf"), 0, nil); err == nil {
		t.Fatal("garbage accepted")
	}
	exe, err := os.ReadFile("/bin/true")
	if err == nil {
		if _, err := Relocate(exe, 0, nil); err == nil || !strings.Contains(err.Error(), "relocatable") {
			t.Fatalf("an executable: %v", err)
		}
	}
	// An unsupported relocation type: patch one entry of .rela.text.
	f, _ := elf.NewFile(bytes.NewReader(obj))
	rs := f.Section(".rela.text")
	bad := slices.Clone(obj)
	info := rs.Offset + 8
	bad[info] = byte(elf.R_X86_64_GOTPCREL)
	if _, err := Relocate(bad, 0xffffffffc0000000, kernelSymbols(rand.New(rand.NewPCG(2, 2)), undefined(t, obj))); err == nil ||
		!strings.Contains(err.Error(), "not supported") {
		t.Fatalf("GOTPCREL: %v", err)
	}
}

func TestParseSymbols(t *testing.T) {
	in := "ffffffff81000000 T _text\nffffffff81001000 t x64_sys_call\n\nffffffffc0002000 t mod_fn\t[e1000]\nffffffff81000010 T _text\n"
	syms, err := ParseSymbols(strings.NewReader(in))
	if err != nil || len(syms) != 3 || syms["_text"] != 0xffffffff81000000 || syms["mod_fn"] != 0xffffffffc0002000 {
		t.Fatalf("%v %v", syms, err)
	}
	for _, bad := range []string{"zz T a\n", "ffff a\n", "ffff TT a\n", "1 T a b\n"} {
		if _, err := ParseSymbols(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzRelocate: hostile objects give an error or an image whose sections
// lie within the image, never a panic.
func FuzzRelocate(f *testing.F) {
	for _, name := range []string{"testdata/seed-calls.o", "testdata/seed-wide.o"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := Relocate(b, 0xffffffffc0000000, Symbols{"printk": 0xffffffff81000000, "x64_sys_call": 0xffffffff81001000})
		if err != nil {
			return
		}
		for _, s := range im.Sections {
			if s.Addr < im.Base || s.Addr+s.Size > im.Base+im.Size || uint64(len(s.Data)) != s.Size {
				t.Fatalf("section %s outside the image", s.Name)
			}
		}
	})
}

// FuzzParseSymbols: any text gives symbols or an error.
func FuzzParseSymbols(f *testing.F) {
	f.Add("ffffffff81000000 T _text\n")
	f.Fuzz(func(t *testing.T, s string) {
		ParseSymbols(strings.NewReader(s))
	})
}
