package linuxkern

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Finding is one place where the guest kernel's control flow has been
// diverted, with its evidence.
type Finding struct {
	Kind     string `json:"kind"`     // dispatch, syscall_table, idt, inline_hook, ftrace, kprobe, hidden_module
	Severity string `json:"severity"` // alert (control leaves the kernel's own code), notice (a hook inside it)
	Target   string `json:"target"`   // what is hooked: a function, sys_call_table[N], idt[N], a module
	Site     uint64 `json:"site"`     // the patched place
	Addr     uint64 `json:"addr"`     // where control goes instead
	Owner    string `json:"owner"`    // the module that address lies in, "no module", or "kernel"
	Evidence string `json:"evidence"`
}

// Key identifies a finding across inspections.
func (f Finding) Key() string { return fmt.Sprintf("%s|%s|%#x|%#x", f.Kind, f.Target, f.Site, f.Addr) }

// Integrity is one check of the kernel's control flow.
type Integrity struct {
	Checked  map[string]int `json:"checked"` // sites looked at, by kind
	Findings []Finding      `json:"findings"`
	Partial  []string       `json:"partial,omitempty"`
}

// Bounds on what integrity checks read.
const (
	maxFuncBytes   = 64 << 10 // a function body decoded (x64_sys_call is ~4 KiB)
	maxSyscalls    = 1024
	maxHookEntries = 4096 // ftrace ops and kprobes walked
)

// watchedFunctions are hooked by rootkits to hide things or take over,
// besides every syscall entry point: the syscall path, the /proc/net
// listings, directory reading, module listing and kallsyms.
var watchedFunctions = []string{
	"entry_SYSCALL_64", "do_syscall_64", "x64_sys_call",
	"tcp4_seq_show", "tcp6_seq_show", "udp4_seq_show", "udp6_seq_show", "unix_seq_show", "packet_seq_show", "raw_seq_show",
	"filldir64", "filldir", "iterate_dir", "proc_pid_readdir", "m_show", "s_show", "kallsyms_lookup_name",
	"vfs_read", "vfs_write", "tcp_v4_rcv", "ip_rcv", "__netif_receive_skb_core", "find_task_by_vpid",
}

// Region is guest kernel memory secaas itself put there (the injected
// syscall monitor): a branch into it is secaas's own hook, not a
// rootkit's.
type Region struct {
	Name       string `json:"name"`
	Base, Size uint64
}

// textRanges knows the kernel's own text, each module's and secaas's own
// regions, to name the owner of an address.
type textRanges struct {
	start, end uint64 // _stext.._etext
	mods       []Module
	own        []Region
	k          *Kernel
}

// ours is the region of secaas's own code holding a, if any.
func (t textRanges) ours(a uint64) (Region, bool) {
	for _, r := range t.own {
		if a >= r.Base && a-r.Base < r.Size {
			return r, true
		}
	}
	return Region{}, false
}

func (k *Kernel) textRanges(mods []Module, own []Region) (textRanges, error) {
	s, ok1 := k.Syms.Lookup("_stext")
	e, ok2 := k.Syms.Lookup("_etext")
	if !ok1 || !ok2 || e.Addr <= s.Addr {
		return textRanges{}, fmt.Errorf("integrity: no kernel text bounds (_stext, _etext)")
	}
	return textRanges{start: s.Addr, end: e.Addr, mods: mods, own: own, k: k}, nil
}

func (t textRanges) inKernel(a uint64) bool { return a >= t.start && a < t.end }

// owner names what holds address a: "kernel" (its text), a module (by its
// core mapping; "(hidden)" when it is off the module list), or "no module".
func (t textRanges) owner(a uint64) string {
	if t.inKernel(a) {
		return "kernel"
	}
	if r, ok := t.ours(a); ok {
		return r.Name
	}
	for _, m := range t.mods {
		if a >= m.Base && a < m.Base+uint64(m.Size) {
			return m.Name
		}
	}
	return "no module"
}

// where describes an address: its owner, and the kernel symbol if in text.
func (t textRanges) where(a uint64) string {
	if t.inKernel(a) {
		if s, ok := t.k.Syms.Nearest(a); ok {
			if a == s.Addr {
				return s.Name
			}
			return fmt.Sprintf("%s+%#x", s.Name, a-s.Addr)
		}
	}
	if r, ok := t.ours(a); ok {
		return fmt.Sprintf("%#x in %s", a, r.Name)
	}
	if o := t.owner(a); o != "no module" {
		return fmt.Sprintf("%#x in module %s", a, o)
	}
	return fmt.Sprintf("%#x (no module)", a)
}

// CheckIntegrity looks for diverted control flow in the guest kernel, from
// memory alone: the syscall path (entry_SYSCALL_64, do_syscall_64 and the
// x64_sys_call dispatch, or the sys_call_table where that dispatches),
// every sys_call_table entry, the IDT, the first instruction of every
// syscall entry point and of functions rootkits hook (an inline jump, an
// ftrace call, a kprobe's int3), and the ftrace and kprobe registrations.
// mods are the modules known (listed and hidden), to name owners; own are
// regions secaas injected itself: hooks into them are reported as notices
// owned by secaas, never as alerts.
func (k *Kernel) CheckIntegrity(mods []Module, own []Region) (*Integrity, error) {
	t, err := k.textRanges(mods, own)
	if err != nil {
		return nil, err
	}
	r := &Integrity{Checked: map[string]int{}, Findings: []Finding{}}
	k.checkSyscallTable(t, r)
	k.checkDispatch(t, r)
	k.checkIDT(t, r)
	ftraceOwners := k.checkFtraceOps(t, r)
	kprobes := k.checkKprobes(t, r)
	for _, f := range k.checkedFunctions(t) {
		k.checkPrologue(t, f.Name, ftraceOwners, kprobes, r)
	}
	return r, nil
}

// checkedFunctions are the functions whose code is checked: the watched
// ones and every syscall entry point (whatever the table says now), in
// kernel text, one per address in address order — aliases (__ia32_sys_x
// and __x64_sys_x are one function on some kernels) named by the x64 name.
func (k *Kernel) checkedFunctions(t textRanges) []Symbol {
	byAddr := map[uint64]string{}
	consider := func(n string) {
		if s, ok := k.Syms.Lookup(n); ok && t.inKernel(s.Addr) {
			if old, dup := byAddr[s.Addr]; !dup || preferName(n, old) {
				byAddr[s.Addr] = n
			}
		}
	}
	for _, n := range watchedFunctions {
		consider(n)
	}
	for _, s := range k.Syms.Syms {
		if (s.Type == 'T' || s.Type == 't') && syscallName(s.Name) {
			consider(s.Name)
		}
	}
	out := make([]Symbol, 0, len(byAddr))
	for a, n := range byAddr {
		out = append(out, Symbol{Name: n, Type: 'T', Addr: a})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

func (r *Integrity) add(f Finding) { r.Findings = append(r.Findings, f) }

// preferName: of two names of one function, the x64 syscall's, else the
// first in order.
func preferName(a, b string) bool {
	ax, bx := strings.HasPrefix(a, "__x64_sys_"), strings.HasPrefix(b, "__x64_sys_")
	if ax != bx {
		return ax
	}
	return a < b
}

// entryName names a probed address: the function's name when it is the
// function's entry (its first byte, or the one after an endbr64, where
// kernels built for IBT put entry probes), else symbol+offset.
func (k *Kernel) entryName(t textRanges, a uint64) string {
	if s, ok := k.Syms.Nearest(a); ok && t.inKernel(a) {
		if a == s.Addr {
			return s.Name
		}
		var b [4]byte
		if a == s.Addr+4 && k.readVA(b[:], s.Addr) == nil && b == [4]byte{0xf3, 0x0f, 0x1e, 0xfa} {
			return s.Name
		}
	}
	return t.where(a)
}

// add adds f, as a notice when control goes into secaas's own code.
func (t textRanges) add(r *Integrity, f Finding) {
	if o, ok := t.ours(f.Addr); ok {
		f.Severity, f.Owner = "notice", o.Name
		f.Evidence += " (secaas's own injected code)"
	}
	r.add(f)
}

// readFunc reads a kernel function's body, up to the next symbol.
func (k *Kernel) readFunc(name string) (Symbol, []byte, error) {
	s, ok := k.Syms.Lookup(name)
	if !ok {
		return s, nil, fmt.Errorf("no symbol %s", name)
	}
	end, ok := k.Syms.End(s.Addr)
	if !ok || end <= s.Addr {
		end = s.Addr + 16
	}
	b := make([]byte, min(end-s.Addr, maxFuncBytes))
	if err := k.readSpan(b, s.Addr); err != nil {
		return s, nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, b, nil
}

// branches decodes a function linearly and returns its direct calls and
// jumps (conditional ones too): (site, target, is-call).
type branch struct {
	site, target uint64
	call         bool
}

func branches(addr uint64, b []byte) []branch {
	var out []branch
	for off := 0; off < len(b); {
		in, err := x86asm.Decode(b[off:], 64)
		if err != nil {
			off++
			continue
		}
		if len(in.Args) > 0 { // call, jmp, jcc, loop: a relative target
			if rel, ok := in.Args[0].(x86asm.Rel); ok {
				site := addr + uint64(off)
				out = append(out, branch{site: site, target: site + uint64(in.Len) + uint64(int64(rel)), call: in.Op == x86asm.CALL})
			}
		}
		off += in.Len
	}
	return out
}

// syscallName: a symbol a syscall dispatch may lead to.
func syscallName(n string) bool {
	return strings.HasPrefix(n, "__x64_sys_") || strings.HasPrefix(n, "__ia32_sys_") || strings.HasPrefix(n, "__x32_compat_sys_") ||
		n == "sys_ni_syscall" || n == "__x64_sys_ni_syscall"
}

// helperName: code the compiler calls from any function (return and
// indirect-branch thunks, the stack protector, fentry).
func helperName(n string) bool {
	return strings.HasPrefix(n, "__x86_indirect_thunk") || strings.HasPrefix(n, "__x86_return_thunk") ||
		n == "__stack_chk_fail" || n == "__fentry__" || strings.HasPrefix(n, "__x86_indirect_call_thunk")
}

// checkSyscallTable checks every sys_call_table entry points at a syscall
// entry point in kernel text.
func (k *Kernel) checkSyscallTable(t textRanges, r *Integrity) {
	s, ok := k.Syms.Lookup("sys_call_table")
	if !ok {
		r.Partial = append(r.Partial, "no sys_call_table symbol")
		return
	}
	end, _ := k.Syms.End(s.Addr)
	n := min((end-s.Addr)/8, maxSyscalls)
	b := make([]byte, n*8)
	if err := k.readSpan(b, s.Addr); err != nil {
		r.Partial = append(r.Partial, fmt.Sprintf("sys_call_table: %v", err))
		return
	}
	_, dispatch := k.Syms.Lookup("x64_sys_call")
	for i := uint64(0); i < n; i++ {
		a := binary.LittleEndian.Uint64(b[i*8:])
		if a == 0 || !k.kernelPtr(a) { // past the table's end (alignment padding)
			break
		}
		r.Checked["syscall_table"]++
		sym, _ := k.Syms.Nearest(a)
		if t.inKernel(a) && sym.Addr == a && syscallName(sym.Name) {
			continue
		}
		f := Finding{Kind: "syscall_table", Target: fmt.Sprintf("sys_call_table[%d]", i), Site: s.Addr + i*8, Addr: a, Owner: t.owner(a), Severity: "alert"}
		f.Evidence = fmt.Sprintf("entry %d points at %s, not a syscall entry point in kernel text", i, t.where(a))
		if dispatch {
			f.Evidence += " (this kernel dispatches through x64_sys_call; the table is read by tracing and by rootkits' own code)"
		}
		t.add(r, f)
	}
}

// checkDispatch checks the syscall path's direct branches: in
// entry_SYSCALL_64 and do_syscall_64 every call stays in kernel text and
// do_syscall_64 calls x64_sys_call (where the kernel has it); in
// x64_sys_call every branch goes to a syscall entry point or within itself.
func (k *Kernel) checkDispatch(t textRanges, r *Integrity) {
	_, hasDispatch := k.Syms.Lookup("x64_sys_call")
	for _, name := range []string{"entry_SYSCALL_64", "do_syscall_64", "x64_sys_call"} {
		s, b, err := k.readFunc(name)
		if err != nil {
			if name != "x64_sys_call" {
				r.Partial = append(r.Partial, err.Error())
			}
			continue
		}
		callsDispatch, redirected := false, false
		for _, br := range branches(s.Addr, b) {
			r.Checked["dispatch"]++
			inSelf := br.target >= s.Addr && br.target < s.Addr+uint64(len(b))
			sym, _ := k.Syms.Nearest(br.target)
			exact := t.inKernel(br.target) && sym.Addr == br.target
			if exact && sym.Name == "x64_sys_call" {
				callsDispatch = true
			}
			ok := t.inKernel(br.target)
			if name == "x64_sys_call" {
				ok = inSelf || exact && (syscallName(sym.Name) || helperName(sym.Name))
			}
			if ok {
				continue
			}
			sev := "alert"
			if t.inKernel(br.target) {
				sev = "notice"
			}
			t.add(r, Finding{Kind: "dispatch", Severity: sev, Target: fmt.Sprintf("%s+%#x", name, br.site-s.Addr), Site: br.site, Addr: br.target,
				Owner: t.owner(br.target), Evidence: fmt.Sprintf("the syscall path branches to %s", t.where(br.target))})
			redirected = true
		}
		// A dispatch call that vanished with no branch to show where
		// it went (an indirect call put in its place, say).
		if name == "do_syscall_64" && hasDispatch && !callsDispatch && !redirected {
			r.add(Finding{Kind: "dispatch", Severity: "alert", Target: name, Site: s.Addr, Owner: "no module",
				Evidence: "do_syscall_64 no longer calls x64_sys_call: the dispatch was redirected"})
		}
	}
}

// checkIDT checks every present gate of idt_table points into kernel
// text.
func (k *Kernel) checkIDT(t textRanges, r *Integrity) {
	s, ok := k.Syms.Lookup("idt_table")
	if !ok {
		r.Partial = append(r.Partial, "no idt_table symbol")
		return
	}
	b := make([]byte, 256*16)
	if err := k.readSpan(b, s.Addr); err != nil {
		r.Partial = append(r.Partial, fmt.Sprintf("idt_table: %v", err))
		return
	}
	// Reserved exception vectors keep the early boot handlers, in init
	// text the kernel freed after boot: never raised, not a hook.
	var early, earlyEnd uint64
	if e, ok := k.Syms.Lookup("early_idt_handler_array"); ok {
		early = e.Addr
		if end, ok := k.Syms.End(e.Addr); ok && end-early <= 32*16 { // 32 stubs of 9 (13 with IBT) bytes
			earlyEnd = end
		}
	}
	le := binary.LittleEndian
	for i := 0; i < 256; i++ {
		g := b[i*16:]
		if g[5]&0x80 == 0 { // not present
			continue
		}
		r.Checked["idt"]++
		a := uint64(le.Uint16(g[0:])) | uint64(le.Uint16(g[6:]))<<16 | uint64(le.Uint32(g[8:]))<<32
		if t.inKernel(a) || i < 32 && a >= early && a < earlyEnd {
			continue
		}
		t.add(r, Finding{Kind: "idt", Severity: "alert", Target: fmt.Sprintf("idt[%d]", i), Site: s.Addr + uint64(i)*16, Addr: a, Owner: t.owner(a),
			Evidence: fmt.Sprintf("interrupt vector %d is handled at %s, outside kernel text", i, t.where(a))})
	}
}

// ftraceOp is one registered ftrace_ops: its callback and trampoline.
type ftraceOp struct{ ops, fn, tramp uint64 }

// checkFtraceOps walks ftrace_ops_list and reports each registration
// whose callback lies outside kernel text; it returns them all, to name
// the owner of an ftrace call at a function's entry.
func (k *Kernel) checkFtraceOps(t textRanges, r *Integrity) []ftraceOp {
	head, ok1 := k.Syms.Lookup("ftrace_ops_list")
	end, ok2 := k.Syms.Lookup("ftrace_list_end")
	if !ok1 || !ok2 {
		return nil // a kernel without function tracing
	}
	fo, err1 := k.Offset("ftrace_ops", "func")
	no, err2 := k.Offset("ftrace_ops", "next")
	to, err3 := k.Offset("ftrace_ops", "trampoline")
	if err1 != nil || err2 != nil || err3 != nil {
		r.Partial = append(r.Partial, "ftrace_ops layout not in BTF")
		return nil
	}
	var out []ftraceOp
	p, err := k.U64(head.Addr)
	for i := 0; err == nil && p != end.Addr && p != 0; i++ {
		if i == maxHookEntries {
			r.Partial = append(r.Partial, "ftrace_ops_list does not end")
			return out
		}
		op := ftraceOp{ops: p}
		if op.fn, err = k.U64(p + uint64(fo)); err != nil {
			break
		}
		op.tramp, _ = k.U64(p + uint64(to))
		out = append(out, op)
		r.Checked["ftrace"]++
		if !t.inKernel(op.fn) {
			t.add(r, Finding{Kind: "ftrace", Severity: "alert", Target: "ftrace_ops_list", Site: p, Addr: op.fn, Owner: t.owner(op.fn),
				Evidence: fmt.Sprintf("an ftrace callback at %s is registered: it can redirect any traced function", t.where(op.fn))})
		}
		p, err = k.U64(p + uint64(no))
	}
	if err != nil {
		r.Partial = append(r.Partial, fmt.Sprintf("ftrace_ops_list: %v", err))
	}
	return out
}

// kprobeAt is one registered kprobe.
type kprobeAt struct{ addr, handler uint64 }

// checkKprobes walks kprobe_table and reports every kprobe with its
// handler's owner: an alert when the handler is outside kernel text.
func (k *Kernel) checkKprobes(t textRanges, r *Integrity) []kprobeAt {
	tab, ok := k.Syms.Lookup("kprobe_table")
	if !ok {
		return nil
	}
	ao, err1 := k.Offset("kprobe", "addr")
	po, err2 := k.Offset("kprobe", "pre_handler")
	ho, err3 := k.Offset("kprobe", "hlist")
	if err1 != nil || err2 != nil || err3 != nil {
		r.Partial = append(r.Partial, "kprobe layout not in BTF")
		return nil
	}
	end, _ := k.Syms.End(tab.Addr)
	buckets := min((end-tab.Addr)/8, 1024)
	var out []kprobeAt
	total := 0
	for i := uint64(0); i < buckets; i++ {
		n, err := k.U64(tab.Addr + i*8)
		for ; err == nil && n != 0; n, err = k.U64(n) { // hlist_node.next is its first member
			if total++; total > maxHookEntries {
				r.Partial = append(r.Partial, "kprobe_table does not end")
				return out
			}
			kp := n - uint64(ho)
			var e1, e2 error
			var at kprobeAt
			at.addr, e1 = k.U64(kp + uint64(ao))
			at.handler, e2 = k.U64(kp + uint64(po))
			if e1 != nil || e2 != nil {
				err = fmt.Errorf("kprobe %#x unreadable", kp)
				break
			}
			out = append(out, at)
			r.Checked["kprobe"]++
			sev := "notice"
			if !t.inKernel(at.handler) {
				sev = "alert"
			}
			t.add(r, Finding{Kind: "kprobe", Severity: sev, Target: k.entryName(t, at.addr), Site: at.addr, Addr: at.handler, Owner: t.owner(at.handler),
				Evidence: fmt.Sprintf("a kprobe on %s runs %s first", t.where(at.addr), t.where(at.handler))})
		}
		if err != nil {
			r.Partial = append(r.Partial, fmt.Sprintf("kprobe_table[%d]: %v", i, err))
		}
	}
	return out
}

// entryCall classifies a call as a function's first instruction: to
// ftrace's own trampolines, or to a dynamic trampoline an ftrace_ops
// owns, it is ftrace; to other kernel code, ordinary code (functions built
// without an fentry site may start with a call); elsewhere, an inline hook.
func (k *Kernel) entryCall(t textRanges, target uint64, ftrace []ftraceOp) string {
	if t.inKernel(target) {
		if s, ok := k.Syms.Nearest(target); ok && s.Addr == target && (strings.HasPrefix(s.Name, "ftrace_") || s.Name == "__fentry__") {
			return "ftrace"
		}
		return ""
	}
	for _, op := range ftrace {
		if op.tramp == target {
			return "ftrace"
		}
	}
	return "inline_hook"
}

// checkPrologue decodes a function's first instruction (after an
// endbr64): the compiler's nop5 (the fentry site ftrace left alone) or
// ordinary code is clean; a call there is an ftrace hook; a jump, a
// movabs+jmp or push+ret is an inline hook; an int3 is a kprobe (or a
// breakpoint).
func (k *Kernel) checkPrologue(t textRanges, name string, ftrace []ftraceOp, kprobes []kprobeAt, r *Integrity) {
	s, ok := k.Syms.Lookup(name)
	if !ok || !t.inKernel(s.Addr) {
		return
	}
	b := make([]byte, 32)
	if err := k.readSpan(b, s.Addr); err != nil {
		r.Partial = append(r.Partial, fmt.Sprintf("%s: %v", name, err))
		return
	}
	r.Checked["prologue"]++
	off := 0
	if b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa { // endbr64
		off = 4
	}
	site := s.Addr + uint64(off)
	in, err := x86asm.Decode(b[off:], 64)
	if err != nil {
		return
	}
	var target uint64
	kind := ""
	switch {
	case b[off] == 0xcc:
		kind = "kprobe"
	case in.Op == x86asm.CALL || in.Op == x86asm.JMP:
		if rel, ok := in.Args[0].(x86asm.Rel); ok {
			target = site + uint64(in.Len) + uint64(int64(rel))
			kind = "inline_hook"
			if in.Op == x86asm.CALL {
				kind = k.entryCall(t, target, ftrace)
			}
		}
	case in.Op == x86asm.MOV && in.Len == 10 && b[off] == 0x48 && b[off+1] >= 0xb8 && b[off+1] <= 0xbf:
		// movabs $imm64, %reg; then jmp/call *%reg or push %reg; ret
		next, err := x86asm.Decode(b[off+10:], 64)
		if err == nil && (next.Op == x86asm.JMP || next.Op == x86asm.CALL || next.Op == x86asm.PUSH) {
			kind, target = "inline_hook", binary.LittleEndian.Uint64(b[off+2:])
		}
	case in.Op == x86asm.PUSH && b[off] == 0x68:
		if next, err := x86asm.Decode(b[off+5:], 64); err == nil && next.Op == x86asm.RET {
			kind, target = "inline_hook", uint64(int64(int32(binary.LittleEndian.Uint32(b[off+1:]))))
		}
	}
	if kind == "" {
		return
	}
	f := Finding{Kind: kind, Severity: "alert", Target: name, Site: site, Addr: target, Owner: t.owner(target)}
	switch kind {
	case "kprobe":
		f.Owner, f.Evidence = "no module", fmt.Sprintf("%s starts with int3: a kprobe or breakpoint", name)
		for _, kp := range kprobes {
			if kp.addr == site || kp.addr == s.Addr {
				f.Addr, f.Owner = kp.handler, t.owner(kp.handler)
				f.Evidence = fmt.Sprintf("%s starts with int3: a kprobe whose handler is %s", name, t.where(kp.handler))
			}
		}
	case "ftrace":
		f.Evidence = fmt.Sprintf("%s's entry calls %s: it is traced (ftrace)", name, t.where(target))
		// The shared trampolines (in kernel text) serve every ops; a
		// dynamic one serves its own.
		var owners, by []string
		own := func(o, what string, a uint64) {
			if !slices.Contains(owners, o) {
				owners = append(owners, o)
			}
			by = append(by, fmt.Sprintf("%s at %#x in %s", what, a, o))
		}
		for _, op := range ftrace {
			if (op.tramp == target || t.inKernel(target)) && t.owner(op.fn) != "kernel" {
				own(t.owner(op.fn), "callback", op.fn)
			}
		}
		for _, kp := range kprobes { // kprobes on function entry go through ftrace
			if (kp.addr == site || kp.addr == s.Addr) && !t.inKernel(kp.handler) {
				own(t.owner(kp.handler), "kprobe handler", kp.handler)
			}
		}
		if len(owners) == 0 {
			f.Severity = "notice" // tracing by the kernel's own code
		} else {
			f.Owner = strings.Join(owners, ", ")
			f.Evidence += " by " + strings.Join(by, ", ")
		}
	default:
		f.Evidence = fmt.Sprintf("%s's first instruction jumps to %s", name, t.where(target))
		if t.inKernel(target) {
			f.Severity = "notice"
		}
	}
	t.add(r, f)
}
