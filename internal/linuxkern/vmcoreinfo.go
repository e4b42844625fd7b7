package linuxkern

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// KernelMapBase is the start of the x86-64 kernel text mapping.
const KernelMapBase = 0xffffffff80000000

// The kernel half of the address space starts here with 4-level and with
// 5-level paging.
const (
	KernelHalf4 = 0xffff800000000000
	KernelHalf5 = 0xff00000000000000
)

// VMCoreInfo is the kernel's VMCOREINFO note, parsed.
type VMCoreInfo struct {
	Addr         int64 // physical address where it was found
	OSRelease    string
	PageSize     int64
	KernelOffset uint64 // KASLR slide of the kernel text
	PhysBase     uint64 // may be "negative" (two's complement)
	Symbols      map[string]uint64
	Sizes        map[string]int64
	Offsets      map[string]int64 // OFFSET(struct.member)
	Numbers      map[string]int64
}

// MaxVMCoreInfo bounds the note's text.
const MaxVMCoreInfo = 4096

// ErrNoVMCoreInfo means no plausible VMCOREINFO was found.
var ErrNoVMCoreInfo = errors.New("no VMCOREINFO in guest memory")

// FindVMCoreInfo scans physical memory for the VMCOREINFO text and returns
// the first copy that parses and passes its consistency checks.
func FindVMCoreInfo(mem io.ReaderAt, size int64) (*VMCoreInfo, error) {
	const chunk = 4 << 20
	needle := []byte("OSRELEASE=")
	buf := make([]byte, chunk+MaxVMCoreInfo)
	var lastErr error
	for base := int64(0); base < size; base += chunk {
		n, _ := mem.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		b := buf[:n]
		for off := 0; ; {
			i := bytes.Index(b[off:], needle)
			if i < 0 || off+i >= chunk {
				break
			}
			at := off + i
			end := min(len(b), at+MaxVMCoreInfo)
			text := b[at:end]
			if z := bytes.IndexByte(text, 0); z >= 0 {
				text = text[:z]
			} else if nl := bytes.LastIndexByte(text, '\n'); nl >= 0 {
				// No end within the bound (the text runs on into the
				// page's next bytes): the lines that fit, not a cut one.
				text = text[:nl+1]
			}
			vi, err := ParseVMCoreInfo(text)
			if err == nil {
				vi.Addr = base + int64(at)
				return vi, nil
			}
			lastErr = err
			off = at + 1
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (last candidate: %v)", ErrNoVMCoreInfo, lastErr)
	}
	return nil, ErrNoVMCoreInfo
}

// parseNumber reads a NUMBER() value: decimal, possibly negative, or, as
// kernels since 6.x print addresses (VMALLOC_START), hexadecimal with 0x,
// kept as its 64-bit pattern.
func parseNumber(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 0, 64); err == nil {
		return n, nil
	}
	u, err := strconv.ParseUint(v, 0, 64)
	return int64(u), err
}

// ParseVMCoreInfo parses VMCOREINFO text ("KEY=value" lines).
func ParseVMCoreInfo(text []byte) (*VMCoreInfo, error) {
	if len(text) > MaxVMCoreInfo {
		return nil, fmt.Errorf("vmcoreinfo: %d bytes exceed %d", len(text), MaxVMCoreInfo)
	}
	vi := &VMCoreInfo{Symbols: map[string]uint64{}, Sizes: map[string]int64{}, Offsets: map[string]int64{}, Numbers: map[string]int64{}}
	seenPage := false
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("vmcoreinfo: line %q is not KEY=value", trunc(line))
		}
		inner := func(prefix string) (string, bool) {
			if rest, ok := strings.CutPrefix(k, prefix+"("); ok && strings.HasSuffix(rest, ")") {
				return rest[:len(rest)-1], true
			}
			return "", false
		}
		var err error
		switch {
		case k == "OSRELEASE":
			vi.OSRelease = v
		case k == "PAGESIZE":
			vi.PageSize, err = strconv.ParseInt(v, 10, 64)
			seenPage = true
		case k == "KERNELOFFSET":
			vi.KernelOffset, err = strconv.ParseUint(v, 16, 64)
		default:
			if name, ok := inner("SYMBOL"); ok {
				vi.Symbols[name], err = strconv.ParseUint(v, 16, 64)
			} else if name, ok := inner("SIZE"); ok {
				vi.Sizes[name], err = strconv.ParseInt(v, 10, 64)
			} else if name, ok := inner("OFFSET"); ok {
				vi.Offsets[name], err = strconv.ParseInt(v, 10, 64)
			} else if name, ok := inner("NUMBER"); ok {
				vi.Numbers[name], err = parseNumber(v)
			}
			// Other keys (CRASHTIME, BUILD-ID, ...) are kept out.
		}
		if err != nil {
			return nil, fmt.Errorf("vmcoreinfo: %s: bad value %q", k, trunc(v))
		}
	}
	switch {
	case vi.OSRelease == "" || len(vi.OSRelease) > 64:
		return nil, errors.New("vmcoreinfo: no plausible OSRELEASE")
	case !seenPage || vi.PageSize != 4096:
		return nil, fmt.Errorf("vmcoreinfo: page size %d is not 4096", vi.PageSize)
	case len(vi.Symbols) == 0:
		return nil, errors.New("vmcoreinfo: no symbols")
	}
	if pb, ok := vi.Numbers["phys_base"]; ok {
		vi.PhysBase = uint64(pb)
	}
	for name, a := range vi.Symbols {
		if a < KernelHalf5 {
			return nil, fmt.Errorf("vmcoreinfo: symbol %s at %#x is not a kernel address", name, a)
		}
	}
	return vi, nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// KernelPA translates a kernel-text virtual address (in the
// __START_KERNEL_map region) to a physical address: va - base + phys_base.
func (vi *VMCoreInfo) KernelPA(va uint64) (int64, error) {
	if va < KernelMapBase {
		return 0, fmt.Errorf("%#x is not in the kernel text mapping", va)
	}
	return int64(va - KernelMapBase + vi.PhysBase), nil
}
