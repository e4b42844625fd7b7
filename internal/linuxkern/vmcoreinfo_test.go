package linuxkern

import (
	"strings"
	"testing"
)

const sample = "OSRELEASE=6.1.0-56-amd64\nBUILD-ID=abc\nPAGESIZE=4096\nSYMBOL(init_uts_ns)=ffffffff9a613f20\nSYMBOL(init_top_pgt)=ffffffff9a40a000\nSIZE(list_head)=16\nOFFSET(list_head.next)=0\nNUMBER(phys_base)=-226492416\nNUMBER(VMALLOC_START)=0xffffd19140000000\nKERNELOFFSET=19000000\n"

func TestParseVMCoreInfo(t *testing.T) {
	vi, err := ParseVMCoreInfo([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if vi.OSRelease != "6.1.0-56-amd64" || vi.KernelOffset != 0x19000000 || vi.Symbols["init_uts_ns"] != 0xffffffff9a613f20 ||
		vi.Sizes["list_head"] != 16 || vi.PhysBase != 0xfffffffff2800000 || uint64(vi.Numbers["VMALLOC_START"]) != 0xffffd19140000000 {
		t.Fatalf("parsed %+v", vi)
	}
	// A negative phys_base wraps: the kernel sits below its link address.
	pa, err := vi.KernelPA(0xffffffff9a613f20)
	if err != nil || pa != int64(0x1a613f20-0xd800000) {
		t.Fatalf("pa %#x %v", pa, err)
	}
	for name, bad := range map[string]string{
		"no release":   strings.Replace(sample, "OSRELEASE=6.1.0-56-amd64\n", "", 1),
		"bad page":     strings.Replace(sample, "PAGESIZE=4096", "PAGESIZE=12", 1),
		"bad hex":      strings.Replace(sample, "ffffffff9a613f20", "zz", 1),
		"user address": strings.Replace(sample, "ffffffff9a613f20", "7fff0000", 1),
		"no equals":    sample + "garbage\n",
		"too long":     sample + strings.Repeat("X=1\n", 2000),
		"no symbols":   "OSRELEASE=6.1\nPAGESIZE=4096\n",
	} {
		if _, err := ParseVMCoreInfo([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseVMCoreInfo(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("OSRELEASE=x\nPAGESIZE=4096\nSYMBOL(a)=ffffffffffffffff\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		vi, err := ParseVMCoreInfo(b)
		if err == nil && (vi.OSRelease == "" || len(vi.Symbols) == 0) {
			t.Fatalf("accepted %q", b)
		}
	})
}

func FuzzDecodeNames(f *testing.F) {
	f.Add([]byte{3, 0, 1, 2, 2, 1, 0}, 2)
	f.Add([]byte{0x81, 0x01, 0}, 1)
	tokens := make([]string, 256)
	for i := range tokens {
		tokens[i] = string(rune('A' + i%26))
	}
	f.Fuzz(func(t *testing.T, b []byte, num int) {
		if num < 0 || num > 1000 {
			return
		}
		n := 0
		err := DecodeNames(b, num, tokens, func(int, byte, string) { n++ })
		if err == nil && n != num {
			t.Fatalf("decoded %d of %d without error", n, num)
		}
	})
}
