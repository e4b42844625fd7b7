package linuxkern

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Module is one loaded kernel module as its struct module describes it.
type Module struct {
	Addr  uint64 `json:"addr"` // struct module address
	Name  string `json:"name"`
	State string `json:"state"` // live, coming, going, unformed
	Base  uint64 `json:"base"`  // core (text) mapping
	Size  uint32 `json:"size"`
}

// ModuleCandidate is a struct module found by scanning physical memory.
type ModuleCandidate struct {
	Module
	PA       int64    `json:"pa"`
	Status   string   `json:"status"` // listed, hidden, unloading
	Evidence []string `json:"evidence,omitempty"`
}

// MaxModules bounds a module list walk.
const MaxModules = 1 << 12

var moduleStates = [...]string{"live", "coming", "going", "unformed"}

// span is how many bytes of a struct module the members read cover.
func (l ModuleLayout) span() uint32 {
	return max(l.State+4, l.List+16, l.Name+l.NameLen, l.MkobjMod+8, l.CoreBase+8, l.CoreSize+4)
}

// decodeModule reads a struct module from its bytes; ok is false when the
// bytes do not look like one (bad state, name or list pointers).
func (k *Kernel) decodeModule(addr uint64, b []byte) (Module, bool) {
	l := k.Module
	le := binary.LittleEndian
	state := le.Uint32(b[l.State:])
	if state >= uint32(len(moduleStates)) {
		return Module{}, false
	}
	name := b[l.Name : l.Name+l.NameLen]
	if !moduleName(name) {
		return Module{}, false
	}
	if !k.kernelPtr(le.Uint64(b[l.List:])) || !k.kernelPtr(le.Uint64(b[l.List+8:])) {
		return Module{}, false
	}
	return Module{Addr: addr, Name: string(name[:bytes.IndexByte(name, 0)]), State: moduleStates[state],
		Base: le.Uint64(b[l.CoreBase:]), Size: le.Uint32(b[l.CoreSize:])}, true
}

// moduleName: 1..len-1 bytes of [A-Za-z0-9_-], then NULs (the kernel
// zero-fills the rest of the name).
func moduleName(b []byte) bool {
	n := bytes.IndexByte(b, 0)
	if n <= 0 {
		return false
	}
	for _, c := range b[:n] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	for _, c := range b[n:] {
		if c != 0 {
			return false
		}
	}
	return true
}

// ReadModule reads the struct module at a kernel address.
func (k *Kernel) ReadModule(addr uint64) (Module, error) {
	b := make([]byte, k.Module.span())
	if err := k.readVA(b, addr); err != nil {
		return Module{}, err
	}
	m, ok := k.decodeModule(addr, b)
	if !ok {
		return Module{}, fmt.Errorf("%#x does not hold a struct module", addr)
	}
	return m, nil
}

// ListModules walks the kernel's module list (the view lsmod has, through
// /proc/modules). It stops with ErrListCorrupt, and what it read so far,
// when the list does not close within MaxModules or leads outside memory.
func (k *Kernel) ListModules() ([]Module, error) {
	head, ok := k.Syms.Lookup("modules")
	if !ok {
		return nil, errors.New("no modules symbol")
	}
	var out []Module
	seen := map[uint64]bool{}
	node, err := k.U64(head.Addr)
	for i := 0; err == nil && i < MaxModules; i++ {
		if node == head.Addr {
			return out, nil
		}
		if seen[node] {
			return out, fmt.Errorf("%w: module list cycle at %#x", ErrListCorrupt, node)
		}
		seen[node] = true
		m, rerr := k.ReadModule(node - uint64(k.Module.List))
		if rerr != nil {
			return out, fmt.Errorf("%w: %v", ErrListCorrupt, rerr)
		}
		out = append(out, m)
		node, err = k.U64(node)
	}
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrListCorrupt, err)
	}
	return out, fmt.Errorf("%w: more than %d modules", ErrListCorrupt, MaxModules)
}

// ScanModules finds struct module instances in all of physical memory by
// fingerprint: a known state, a module name, list pointers into kernel
// space, and — the decisive invariant — mkobj.mod, which points back at
// the module itself: translated through the guest's page tables it must
// land on the very physical address being tested. Memory of unloaded
// modules is unmapped, so it fails that test. A module found this way but
// absent from the module list is hidden.
func (k *Kernel) ScanModules(size int64, listed []Module) ([]ModuleCandidate, ScanStats, error) {
	l := k.Module
	inList := map[uint64]bool{}
	for _, m := range listed {
		inList[m.Addr] = true
	}
	var out []ModuleCandidate
	span := int64(l.span())
	st, err := k.eachChunk(size, span, func(base int64, mem []byte, limit int64) {
		for off := alignedFrom(base); off < limit && off+span <= int64(len(mem)); off += scanAlign {
			// Fast reject, inline: a module name starts with [A-Za-z0-9_],
			// and mkobj.mod is in the module area (its top bytes are 0xff).
			if c := mem[off+int64(l.Name)]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') ||
				mem[off+int64(l.MkobjMod)+7] != 0xff {
				continue
			}
			if c, ok := k.moduleAt(base+off, mem[off:], inList); ok {
				out = append(out, c)
			}
		}
	})
	st.Candidates = len(out)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, st, err
}

// moduleAt applies the module fingerprint to the bytes b at physical
// address pa and classifies a match against the list.
func (k *Kernel) moduleAt(pa int64, b []byte, inList map[uint64]bool) (ModuleCandidate, bool) {
	l := k.Module
	le := binary.LittleEndian
	self := le.Uint64(b[l.MkobjMod:])
	if self < ModuleBase || self&(scanAlign-1) != 0 {
		return ModuleCandidate{}, false
	}
	m, ok := k.decodeModule(self, b)
	if !ok {
		return ModuleCandidate{}, false
	}
	if got, err := k.Walk(self); err != nil || got != pa {
		return ModuleCandidate{}, false
	}
	c := ModuleCandidate{Module: m, PA: pa}
	switch {
	case inList[self]:
		c.Status = "listed"
	case m.State == "going" || m.State == "unformed":
		c.Status = "unloading"
	default:
		c.Status = "hidden"
		c.Evidence = []string{"not on the module list", fmt.Sprintf("mapped at %#x, state %s", self, m.State)}
	}
	return c, true
}
