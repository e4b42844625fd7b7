package kmon

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNoDirectDispatch: the guest's do_syscall_64 has no direct call of
// x64_sys_call (a kernel that dispatches through sys_call_table instead).
var ErrNoDirectDispatch = errors.New("do_syscall_64 calls no x64_sys_call (table dispatch: not supported yet)")

// FindDispatch finds the call of target (x64_sys_call) in code, the
// bytes of do_syscall_64 at addr: the address of the call instruction
// (E8 rel32). There must be exactly one.
func FindDispatch(code []byte, addr, target uint64) (uint64, error) {
	var found []uint64
	for i := 0; i+5 <= len(code); i++ {
		if code[i] != 0xe8 {
			continue
		}
		rel := int32(binary.LittleEndian.Uint32(code[i+1:]))
		if addr+uint64(i)+5+uint64(int64(rel)) == target {
			found = append(found, addr+uint64(i))
		}
	}
	switch len(found) {
	case 0:
		return 0, ErrNoDirectDispatch
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("do_syscall_64 calls x64_sys_call %d times: which to hook is unclear", len(found))
}

// rel32 is the displacement a call at site needs to reach to.
func rel32(site, to uint64) ([]byte, error) {
	d := int64(to - (site + 5))
	if d != int64(int32(d)) {
		return nil, fmt.Errorf("%#x is out of a call's reach from %#x", to, site)
	}
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, uint32(int32(d)))
	return b, nil
}

// Hook is the guest's syscall dispatch redirected to a monitor.
type Hook struct {
	Site uint64 // the call instruction in do_syscall_64
	Orig []byte // its rel32 before
	To   uint64 // the monitor
}

// HookDispatch redirects the guest's one call of x64_sys_call in
// do_syscall_64 to monitor (same arguments, same return), by rewriting
// the call's rel32 while every vCPU is stopped.
func (t *Target) HookDispatch(monitor uint64) (*Hook, error) {
	do, err := t.sym("do_syscall_64")
	if err != nil {
		return nil, err
	}
	x64, err := t.sym("x64_sys_call")
	if err != nil {
		return nil, err
	}
	code, err := t.GDB.ReadMemory(do, 1024)
	if err != nil {
		return nil, err
	}
	site, err := FindDispatch(code, do, x64)
	if err != nil {
		return nil, err
	}
	off := site - do + 1
	h := &Hook{Site: site, Orig: append([]byte(nil), code[off:off+4]...), To: monitor}
	nb, err := rel32(site, monitor)
	if err != nil {
		return nil, err
	}
	if err := t.GDB.WriteMemory(site+1, nb); err != nil {
		return nil, err
	}
	back, err := t.GDB.ReadMemory(site+1, 4)
	if err != nil || string(back) != string(nb) {
		return nil, fmt.Errorf("the hook did not take at %#x: %x %v", site, back, err)
	}
	return h, nil
}

// Unhook puts the original call back (every vCPU stopped).
func (t *Target) Unhook(h *Hook) error {
	if err := t.GDB.WriteMemory(h.Site+1, h.Orig); err != nil {
		return err
	}
	back, err := t.GDB.ReadMemory(h.Site+1, 4)
	if err != nil || string(back) != string(h.Orig) {
		return fmt.Errorf("the original call did not come back at %#x: %x %v", h.Site, back, err)
	}
	return nil
}
