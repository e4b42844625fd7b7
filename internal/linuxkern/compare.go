package linuxkern

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/cilium/ebpf/btf"
)

// CompareImage compares the running kernel with its own image, byte for
// byte once the boot's relocation is applied: the syscall path and every
// syscall entry point and watched function, whole, and every
// sys_call_table entry. Places the kernel patches while it boots
// (alternatives, retpoline and return thunks, lock prefixes, paravirt
// sites, IBT seals, jump labels, static calls) and each function's fentry
// site (ftrace's, checked by CheckIntegrity) are left out. The image must
// be this kernel's: its linux_banner must match.
func (k *Kernel) CompareImage(im *Image, mods []Module, own []Region) (*Integrity, error) {
	t, err := k.textRanges(mods, own)
	if err != nil {
		return nil, err
	}
	delta := k.Info.KernelOffset
	if err := k.sameKernel(im, delta); err != nil {
		return nil, err
	}
	r := &Integrity{Checked: map[string]int{}, Findings: []Finding{}}
	masks, err := k.runtimePatches(im, delta)
	if err != nil {
		return nil, err
	}
	var fentry uint64 // __fentry__'s link address
	if s, ok := k.Syms.Lookup("__fentry__"); ok {
		fentry = s.Addr - delta
	}
	for _, fn := range k.checkedFunctions(t) {
		a := fn.Addr
		end, ok := k.Syms.End(a)
		if !ok || end <= a {
			continue
		}
		n := min(end-a, maxFuncBytes)
		live := make([]byte, n)
		if err := k.readSpan(live, a); err != nil {
			r.Partial = append(r.Partial, fmt.Sprintf("%s: %v", fn.Name, err))
			continue
		}
		want, ok := im.relocated(a-delta, n, delta)
		if !ok {
			r.Partial = append(r.Partial, fmt.Sprintf("%s: not in the image's text", fn.Name))
			continue
		}
		r.Checked["image_text"]++
		for i := uint64(0); i < n; i++ {
			if live[i] == want[i] || masks.covers(a-delta+i) {
				continue
			}
			// An fentry site: the image calls __fentry__, the kernel
			// made it a nop (or an ftrace call, which CheckIntegrity
			// judges).
			if o, ok := fentryAt(want, i, a-delta, fentry); ok && (bytes.Equal(live[o:o+5], nop5) || live[o] == 0xe8) {
				i = o + 4
				continue
			}
			// The first differing byte no boot patch explains.
			f := Finding{Kind: "text_changed", Severity: "alert", Target: fmt.Sprintf("%s+%#x", fn.Name, i), Site: a + i, Owner: "no module",
				Evidence: fmt.Sprintf("%s differs from the guest's own kernel image at +%#x: % x, the image has % x", fn.Name, i,
					live[i:min(i+8, n)], want[i:min(i+8, n)])}
			if tg, ok := branchTarget(live, i, a); ok {
				f.Addr, f.Owner = tg, t.owner(tg)
				f.Evidence += fmt.Sprintf("; it branches to %s", t.where(tg))
			}
			t.add(r, f)
			break
		}
	}
	k.compareTable(im, delta, t, r)
	return r, nil
}

// sameKernel checks the image is the running kernel's: the banner
// (version, compiler, build date) at its link address.
func (k *Kernel) sameKernel(im *Image, delta uint64) error {
	s, ok := k.Syms.Lookup("linux_banner")
	if !ok {
		return fmt.Errorf("no linux_banner symbol")
	}
	live := make([]byte, 160)
	if err := k.readSpan(live, s.Addr); err != nil {
		return fmt.Errorf("linux_banner: %w", err)
	}
	img, ok := im.bytesAt(s.Addr-delta, uint64(len(live)))
	if !ok || !bytes.Equal(live[:bytes.IndexByte(append(live, 0), 0)], img[:bytes.IndexByte(append(img, 0), 0)]) {
		return fmt.Errorf("the image is not this kernel's: its banner differs from %q", printable(live[:bytes.IndexByte(append(live, 0), 0)]))
	}
	return nil
}

// nop5 is the 5-byte nop the kernel leaves at fentry sites.
var nop5 = []byte{0x0f, 0x1f, 0x44, 0x00, 0x00}

// fentryAt finds a call of __fentry__ (at link address fentry) in the
// image's code img (at link address a) covering byte i; it returns the
// call's offset.
func fentryAt(img []byte, i, a, fentry uint64) (uint64, bool) {
	for back := uint64(0); back <= 4 && back <= i; back++ {
		o := i - back
		if img[o] == 0xe8 && o+5 <= uint64(len(img)) && a+o+5+uint64(int64(int32(binary.LittleEndian.Uint32(img[o+1:])))) == fentry {
			return o, true
		}
	}
	return 0, false
}

// branchTarget decodes a jmp/call rel32 that covers byte i of code at a.
func branchTarget(code []byte, i, a uint64) (uint64, bool) {
	for back := uint64(0); back <= 4 && back <= i; back++ {
		o := i - back
		if (code[o] == 0xe8 || code[o] == 0xe9) && o+5 <= uint64(len(code)) {
			return a + o + 5 + uint64(int64(int32(binary.LittleEndian.Uint32(code[o+1:])))), true
		}
	}
	return 0, false
}

// compareTable checks each sys_call_table entry equals the image's,
// relocated.
func (k *Kernel) compareTable(im *Image, delta uint64, t textRanges, r *Integrity) {
	s, ok := k.Syms.Lookup("sys_call_table")
	if !ok {
		return
	}
	end, _ := k.Syms.End(s.Addr)
	n := min((end-s.Addr)/8, maxSyscalls) * 8
	live := make([]byte, n)
	want, ok := im.relocated(s.Addr-delta, n, delta)
	if !ok || k.readSpan(live, s.Addr) != nil {
		r.Partial = append(r.Partial, "sys_call_table: not comparable with the image")
		return
	}
	for i := uint64(0); i < n; i += 8 {
		r.Checked["image_table"]++
		lv, wv := binary.LittleEndian.Uint64(live[i:]), binary.LittleEndian.Uint64(want[i:])
		if lv == wv {
			continue
		}
		t.add(r, Finding{Kind: "table_changed", Severity: "alert", Target: fmt.Sprintf("sys_call_table[%d]", i/8), Site: s.Addr + i, Addr: lv,
			Owner: t.owner(lv), Evidence: fmt.Sprintf("entry %d is %s; the guest's own image has %s", i/8, t.where(lv), t.where(wv))})
	}
}

// patchMask is the set of link addresses boot patching may change.
type patchMask []span

func (m patchMask) covers(a uint64) bool {
	i := sort.Search(len(m), func(i int) bool { return m[i].at+m[i].n > a })
	for ; i < len(m) && m[i].at <= a; i++ {
		if a < m[i].at+m[i].n {
			return true
		}
	}
	return false
}

// runtimePatches adds to the image's patch sites those the running kernel
// lists itself (jump labels, static calls), as link addresses, sorted.
func (k *Kernel) runtimePatches(im *Image, delta uint64) (patchMask, error) {
	m := append(patchMask{}, im.patches...)
	// Alternatives, read with this kernel's struct alt_instr.
	if len(im.alt.Data) > 0 {
		var st *btf.Struct
		if err := k.BTF.TypeByName("alt_instr", &st); err != nil {
			return nil, fmt.Errorf("alternatives: no struct alt_instr in BTF: %w", err)
		}
		lenOff, err := offsetOf(k.BTF, "alt_instr", "instrlen")
		if err != nil || st.Size < 8 || lenOff >= st.Size || len(im.alt.Data)%int(st.Size) != 0 {
			return nil, fmt.Errorf("alternatives: struct alt_instr of %d bytes does not fit the image's table", st.Size)
		}
		for off := uint32(0); off+st.Size <= uint32(len(im.alt.Data)); off += st.Size {
			e := im.alt.Data[off:]
			at := im.alt.Addr + uint64(off) + uint64(int64(int32(binary.LittleEndian.Uint32(e))))
			m = append(m, span{at, uint64(e[lenOff])})
		}
	}
	for _, l := range []struct {
		start, stop string
		size, width uint64
	}{
		{"__start___jump_table", "__stop___jump_table", 16, 5},
		{"__start_static_call_sites", "__stop_static_call_sites", 8, 5},
	} {
		s1, ok1 := k.Syms.Lookup(l.start)
		s2, ok2 := k.Syms.Lookup(l.stop)
		if !ok1 || !ok2 || s2.Addr <= s1.Addr || s2.Addr-s1.Addr > 16<<20 {
			continue
		}
		b := make([]byte, s2.Addr-s1.Addr)
		if k.readSpan(b, s1.Addr) != nil {
			continue
		}
		for off := uint64(0); off+l.size <= uint64(len(b)); off += l.size {
			site := s1.Addr + off + uint64(int64(int32(binary.LittleEndian.Uint32(b[off:]))))
			m = append(m, span{site - delta, l.width})
		}
	}
	sort.Slice(m, func(i, j int) bool { return m[i].at < m[j].at })
	// covers searches by end; make ends monotonic by merging overlaps.
	merged := m[:0]
	for _, s := range m {
		if len(merged) > 0 && s.at <= merged[len(merged)-1].at+merged[len(merged)-1].n {
			last := &merged[len(merged)-1]
			last.n = max(last.n, s.at+s.n-last.at)
			continue
		}
		merged = append(merged, s)
	}
	return merged, nil
}
