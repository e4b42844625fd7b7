package linuxkern

import (
	"encoding/binary"
	"slices"
	"testing"

	"secaas/internal/memio"
)

// integrityKernel: a synthetic kernel with text at KernelMapBase+0x10000
// (two syscall entry points, a dispatch that jumps to them), a
// sys_call_table, an IDT and symbols to bound them.
func integrityKernel(t *testing.T) (*Kernel, memio.Bytes) {
	ram := make(memio.Bytes, 1<<20)
	k := hostileKernel(ram, 0x1000)
	text := func(off uint64) uint64 { return uint64(KernelMapBase) + off }
	syms := []Symbol{
		{Name: "_stext", Type: 'T', Addr: text(0x10000)},
		{Name: "__x64_sys_read", Type: 'T', Addr: text(0x10000)},
		{Name: "__x64_sys_write", Type: 'T', Addr: text(0x10010)},
		{Name: "x64_sys_call", Type: 'T', Addr: text(0x10020)},
		{Name: "do_syscall_64", Type: 'T', Addr: text(0x10040)},
		{Name: "entry_SYSCALL_64", Type: 'T', Addr: text(0x10060)},
		{Name: "_etext", Type: 'T', Addr: text(0x20000)},
		{Name: "sys_call_table", Type: 'D', Addr: text(0x30000)},
		{Name: "after_table", Type: 'D', Addr: text(0x30040)},
		{Name: "idt_table", Type: 'D', Addr: text(0x31000)},
		{Name: "after_idt", Type: 'D', Addr: text(0x32000)},
	}
	k.Syms = &Kallsyms{Syms: syms, byName: map[string]int{}}
	for i, s := range syms {
		k.Syms.byName[s.Name] = i
	}
	k.Syms.index()
	nop5 := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3}
	copy(ram[0x10000:], nop5)
	copy(ram[0x10010:], nop5)
	// x64_sys_call: nop5; cmp $0,%esi; je read; jmp write
	rel := func(from, to uint64) []byte {
		b := make([]byte, 4)
		binary.LittleEndian.PutUint32(b, uint32(int32(int64(to)-int64(from))))
		return b
	}
	d := []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0x83, 0xfe, 0x00, 0x0f, 0x84}
	d = append(d, rel(text(0x10020+14), text(0x10000))...)
	d = append(d, 0xe9)
	d = append(d, rel(text(0x10020+19), text(0x10010))...)
	copy(ram[0x10020:], d)
	// do_syscall_64: call x64_sys_call; ret
	c := append([]byte{0xe8}, rel(text(0x10045), text(0x10020))...)
	copy(ram[0x10040:], append(c, 0xc3))
	// entry_SYSCALL_64: call do_syscall_64; ret
	c = append([]byte{0xe8}, rel(text(0x10065), text(0x10040))...)
	copy(ram[0x10060:], append(c, 0xc3))
	binary.LittleEndian.PutUint64(ram[0x30000:], text(0x10000))
	binary.LittleEndian.PutUint64(ram[0x30008:], text(0x10010))
	gate(ram, 0, text(0x10060))
	return k, ram
}

// gate writes a present interrupt gate i of the IDT at pa 0x31000.
func gate(ram memio.Bytes, i int, a uint64) {
	g := ram[0x31000+i*16:]
	binary.LittleEndian.PutUint16(g[0:], uint16(a))
	binary.LittleEndian.PutUint16(g[2:], 0x10)
	g[5] = 0x8e
	binary.LittleEndian.PutUint16(g[6:], uint16(a>>16))
	binary.LittleEndian.PutUint32(g[8:], uint32(a>>32))
}

// TestIntegrity: a clean synthetic kernel has no finding; a table entry,
// an IDT gate, a dispatch branch and a syscall's first instruction
// pointing into a module are each found, with the module named.
func TestIntegrity(t *testing.T) {
	k, ram := integrityKernel(t)
	evil := Module{Name: "evil", Base: ModuleBase, Size: 0x2000}
	mods := []Module{evil}
	r, err := k.CheckIntegrity(mods, nil)
	if err != nil || len(r.Findings) != 0 || r.Checked["syscall_table"] != 2 || r.Checked["idt"] != 1 || r.Checked["dispatch"] != 4 {
		t.Fatalf("clean: %v %+v", err, r)
	}
	// The module's code must be readable for the prologue check to go on;
	// it need not be mapped for the others.
	hook := uint64(ModuleBase) + 0x100
	binary.LittleEndian.PutUint64(ram[0x30008:], hook)
	gate(ram, 3, hook)
	jmp := []byte{0xe9, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(jmp[1:], uint32(hook-(uint64(KernelMapBase)+0x10000+5)))
	copy(ram[0x10000:], jmp)
	r, err = k.CheckIntegrity(mods, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Finding{}
	for _, f := range r.Findings {
		got[f.Kind+" "+f.Target] = f
	}
	for _, want := range []string{"syscall_table sys_call_table[1]", "idt idt[3]", "inline_hook __x64_sys_read"} {
		f, ok := got[want]
		if !ok || f.Owner != "evil" || f.Addr != hook || f.Severity != "alert" {
			t.Errorf("%s: %+v (all: %+v)", want, f, r.Findings)
		}
	}
	// do_syscall_64 calling elsewhere than x64_sys_call.
	c := []byte{0xe8, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(c[1:], uint32(hook-(uint64(KernelMapBase)+0x10045)))
	copy(ram[0x10040:], c)
	r, _ = k.CheckIntegrity(mods, nil)
	var redirected bool
	for _, f := range r.Findings {
		redirected = redirected || f.Kind == "dispatch" && f.Target == "do_syscall_64+0x0" && f.Addr == hook && f.Owner == "evil"
	}
	if !redirected {
		t.Errorf("dispatch redirect not found: %+v", r.Findings)
	}
	// The call replaced by something that is not a direct branch.
	copy(ram[0x10040:], []byte{0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3})
	r, _ = k.CheckIntegrity(mods, nil)
	if !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Kind == "dispatch" && f.Target == "do_syscall_64" }) {
		t.Errorf("a vanished dispatch call is not found: %+v", r.Findings)
	}
	copy(ram[0x10040:], c)
	// The same redirect into secaas's own injected monitor: notices, owned
	// by secaas, and no "no longer calls x64_sys_call" alert.
	own := []Region{{Name: "secaas kmon", Base: hook - 0x100, Size: 0x1000}}
	r, _ = k.CheckIntegrity(nil, own)
	for _, f := range r.Findings {
		if f.Addr == hook && (f.Severity != "notice" || f.Owner != "secaas kmon") || f.Severity == "alert" {
			t.Errorf("own hook reported as %+v", f)
		}
	}
	if len(r.Findings) == 0 {
		t.Error("the own hooks are not reported at all")
	}
}

// FuzzIntegrity: whatever the kernel's text and tables hold, the checks
// end and do not panic.
func FuzzIntegrity(f *testing.F) {
	f.Add(make([]byte, 256), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, at uint16) {
		k, ram := integrityKernel(t)
		for _, base := range []int{0x10000, 0x30000, 0x31000} {
			copy(ram[base+int(at)%0x800:], b)
		}
		k.CheckIntegrity([]Module{{Name: "m", Base: ModuleBase, Size: 0x1000}}, []Region{{Name: "own", Base: ModuleBase + 0x1000, Size: 0x1000}})
	})
}
