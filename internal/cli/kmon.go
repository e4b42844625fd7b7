package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"secaas/internal/elfreloc"
)

// kmonRelocate relocates a monitoring object offline, for scripts and
// for comparison with other linkers.
func kmonRelocate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags("kmon relocate", env)
	object := fs.String("object", "", "the ELF relocatable object (x86-64, built for the kernel code model)")
	baseText := fs.String("base", "", "the address of the first section, hexadecimal (e.g. 0xffffffffc0000000)")
	symbols := fs.String("symbols", "", "the target's symbols in nm format (ADDR TYPE NAME per line, as /proc/kallsyms prints)")
	out := fs.String("out", "", "directory for SECTION.bin files and layout.json")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	base, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(*baseText), "0x"), 16, 64)
	if err != nil {
		return usageError{fmt.Errorf("--base %q: a hexadecimal address", *baseText)}
	}
	obj, err := os.ReadFile(*object)
	if err != nil {
		return err
	}
	sf, err := os.Open(*symbols)
	if err != nil {
		return err
	}
	syms, err := elfreloc.ParseSymbols(sf)
	sf.Close()
	if err != nil {
		return err
	}
	im, err := elfreloc.Relocate(obj, base, syms)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, s := range im.Sections {
		// Section names become file names: keep them to one path element.
		name := strings.NewReplacer("/", "_", "\x00", "_").Replace(s.Name)
		if name == "" || name == "." || name == ".." {
			return fmt.Errorf("section name %q cannot be a file name", s.Name)
		}
		if err := os.WriteFile(filepath.Join(*out, name+".bin"), s.Data, 0o644); err != nil {
			return err
		}
	}
	layout, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "layout.json"), append(layout, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%d sections, %d bytes from %#x, %d global symbols; written to %s\n", len(im.Sections), im.Size, im.Base, len(im.Symbols), *out)
	return nil
}
