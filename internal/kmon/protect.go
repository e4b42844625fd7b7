package kmon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"secaas/internal/gdbstub"
)

// Tamper is a change to the monitor's hold on the guest that Check found
// and undid.
type Tamper struct {
	What   string // "dispatch" (the hooked call), "code" (a monitor section), "data" (the host's part of the shared area) or "lstar" (the syscall entry MSR)
	Addr   uint64
	Detail string
	Err    error // the repair failed
}

func (t Tamper) String() string {
	s := fmt.Sprintf("%s at %#x: %s", t.What, t.Addr, t.Detail)
	if t.Err != nil {
		return s + "; not repaired: " + t.Err.Error()
	}
	return s + "; repaired"
}

// Check compares, in the guest's RAM (the guest is not stopped), the
// hooked call in do_syscall_64, the monitor's code and the host's part of
// its shared area (task layout, policies, watched and blocked syscalls)
// with what was written, and the syscall entry MSR with its value at
// injection, and puts back whatever differs: a rootkit that unhooks,
// patches or disarms the monitor, or moves the syscall entry, is undone
// within one check.
func (s *Session) Check(ctx context.Context) ([]Tamper, error) {
	var found []Tamper
	h := s.mon.Hook
	want, err := rel32(h.Site, h.To)
	if err != nil {
		return nil, err
	}
	site, err := ReadVA(s.k, h.Site, 5)
	if err != nil {
		return nil, err
	}
	if site[0] != 0xe8 || !bytes.Equal(site[1:], want) {
		found = append(found, Tamper{What: "dispatch", Addr: h.Site, Detail: fmt.Sprintf("the call reads %x, not e8%x", site, want)})
	}
	for _, sec := range s.mon.Injected.Image.Sections {
		if !sec.Exec || len(sec.Data) == 0 {
			continue
		}
		got, err := ReadVA(s.k, sec.Addr, len(sec.Data))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, sec.Data) {
			n := 0
			for i := range got {
				if got[i] != sec.Data[i] {
					n++
				}
			}
			found = append(found, Tamper{What: "code", Addr: sec.Addr, Detail: fmt.Sprintf("%d bytes of %s changed", n, sec.Name)})
		}
	}
	for _, off := range slices.Sorted(maps.Keys(s.mon.host)) {
		want := s.mon.host[off]
		got, err := ReadVA(s.k, s.mon.Shared+off, len(want))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, want) {
			found = append(found, Tamper{What: "data", Addr: s.mon.Shared + off, Detail: fmt.Sprintf("the host's %s changed", hostField[off])})
		}
	}
	ls, err := ReadVA(s.k, s.mon.Shared+offLstarSeen, 16)
	if err != nil {
		return nil, err
	}
	seen, good := binary.LittleEndian.Uint64(ls), binary.LittleEndian.Uint64(ls[8:])
	if good != 0 && seen != good {
		found = append(found, Tamper{What: "lstar", Addr: seen, Detail: fmt.Sprintf("the syscall entry is %#x, not %#x", seen, good)})
	}
	if len(found) == 0 {
		return nil, nil
	}
	c, err := s.attach(ctx)
	if err == nil {
		defer c.Detach()
	}
	for i, t := range found {
		if err != nil {
			found[i].Err = err
			continue
		}
		switch t.What {
		case "data":
			found[i].Err = c.WriteMemory(t.Addr, s.mon.host[t.Addr-s.mon.Shared])
		case "lstar":
			found[i].Err = s.fixLstar(ctx, c, good)
		case "dispatch":
			found[i].Err = c.WriteMemory(h.Site, append([]byte{0xe8}, want...))
		case "code":
			for _, sec := range s.mon.Injected.Image.Sections {
				if sec.Addr == t.Addr {
					found[i].Err = c.WriteMemory(sec.Addr, sec.Data)
				}
			}
		}
	}
	return found, nil
}

// hostField names the host's parts of the shared area.
var hostField = map[uint64]string{offLayout: "task layout", offCurrent: "current task's place", offBlock: "blocked syscalls", offWatch: "watched syscalls", offPolicy: "policies"}

// fixLstar has the guest kernel put its syscall entry back on every CPU
// (on_each_cpu_cond_mask with the monitor's secaas_fix_lstar) and marks
// it seen.
func (s *Session) fixLstar(ctx context.Context, c *gdbstub.Client, good uint64) error {
	each, mask, fix := s.syms["on_each_cpu_cond_mask"], s.syms["__cpu_online_mask"], s.mon.Injected.Image.Symbols["secaas_fix_lstar"]
	if each == 0 || mask == 0 || fix == 0 {
		return errors.New("the guest has no on_each_cpu_cond_mask or __cpu_online_mask in its symbols")
	}
	tg := &Target{GDB: c, Syms: s.syms}
	if err := tg.Catch(ctx); err != nil {
		return err
	}
	if _, err := tg.Call(ctx, each, 0, fix, 0, 1, mask); err != nil {
		return err
	}
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, good)
	return c.WriteMemory(s.mon.Shared+offLstarSeen, b)
}
