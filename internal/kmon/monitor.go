package kmon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"secaas/internal/gdbstub"
)

// The monitor's shared area (object/monitor.c: its static assertions
// hold the C side to these offsets).
const (
	sharedMagic  = 0x5345434141534d32 // "SECAASM2"
	offCalls     = 8
	offBlocked   = 16
	offInFlight  = 24
	offBlock     = 32
	offCount     = 96
	offLayout    = 4192
	offWatch     = 4208
	offPolicy    = 4272
	policySize   = 216
	maxPolicies  = 8
	offEvHead    = 6000
	offEvents    = 6008
	eventSize    = 176
	ringEvents   = 64
	pathLen      = 128
	maxSyscall   = 512
	offLstarSeen = offEvents + ringEvents*eventSize
	offLstarGood = offLstarSeen + 8
	offCurrent   = offLstarGood + 8
	sharedSize   = offCurrent + 8
	actionOff    = 0
	actionRecord = 1
	actionBlock  = 2
)

// Policy is the paper's P = (syscalls, (subject, object), response) for
// one VM: syscalls made by a process whose comm is Subject on the file
// Object (open's and openat's path; empty: any) are recorded, or blocked
// with EPERM (Action "record" or "block").
type Policy struct {
	Syscalls []int  `json:"syscalls"`
	Subject  string `json:"subject"`
	Object   string `json:"object,omitempty"`
	Action   string `json:"action"`
}

// TaskOffsets are the guest's task layout the monitor needs (from BTF),
// and where the current task's pointer is (a per-CPU offset in %gs).
type TaskOffsets struct {
	Pid, Comm, Cred, UID uint32
	Current              uint64
}

// EncodePolicies lays out policies for the shared area: the policy table
// and the union of their syscall sets.
func EncodePolicies(ps []Policy) (table, watch []byte, err error) {
	if len(ps) > maxPolicies {
		return nil, nil, fmt.Errorf("at most %d policies", maxPolicies)
	}
	table = make([]byte, maxPolicies*policySize)
	watch = make([]byte, maxSyscall/8)
	for i, p := range ps {
		b := table[i*policySize:]
		var action uint32
		switch p.Action {
		case "record":
			action = actionRecord
		case "block":
			action = actionBlock
		default:
			return nil, nil, fmt.Errorf("policy %d: action %q is neither record nor block", i, p.Action)
		}
		if p.Subject == "" || len(p.Subject) > 15 {
			return nil, nil, fmt.Errorf("policy %d: subject %q: a process name of 1-15 bytes", i, p.Subject)
		}
		if len(p.Object) > pathLen-1 || bytes.IndexByte([]byte(p.Object), 0) >= 0 {
			return nil, nil, fmt.Errorf("policy %d: object too long", i)
		}
		if len(p.Syscalls) == 0 {
			return nil, nil, fmt.Errorf("policy %d: no syscalls", i)
		}
		for _, nr := range p.Syscalls {
			if nr < 0 || nr >= maxSyscall {
				return nil, nil, fmt.Errorf("policy %d: syscall %d", i, nr)
			}
			b[nr/8] |= 1 << (nr % 8)
			watch[nr/8] |= 1 << (nr % 8)
		}
		copy(b[64:80], p.Subject)
		copy(b[80:80+pathLen], p.Object)
		binary.LittleEndian.PutUint32(b[80+pathLen:], action)
	}
	return table, watch, nil
}

// Event is one syscall a policy matched.
type Event struct {
	Seq     uint64 `json:"seq"`
	TimeNs  int64  `json:"time_ns"` // the guest's monotonic clock
	PID     int    `json:"pid"`
	UID     int    `json:"uid"`
	Syscall int    `json:"syscall"`
	Verdict string `json:"verdict"`
	Comm    string `json:"comm"`
	Path    string `json:"path"`
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// DecodeEvents reads the events numbered above after from a copy of the
// shared area, oldest first; lost counts those the ring overwrote before
// they were read. The area is guest memory: anything in it is checked.
func DecodeEvents(area []byte, after uint64) (evs []Event, next uint64, lost int, err error) {
	if len(area) < sharedSize || binary.LittleEndian.Uint64(area) != sharedMagic {
		return nil, after, 0, errors.New("not the monitor's shared area")
	}
	head := binary.LittleEndian.Uint64(area[offEvHead:])
	if head < after {
		return nil, after, 0, fmt.Errorf("the event count went back (%d < %d)", head, after)
	}
	from := after
	if head-after > ringEvents {
		lost = int(head - after - ringEvents)
		from = head - ringEvents
	}
	for n := from; n < head; n++ {
		b := area[offEvents+int(n%ringEvents)*eventSize:]
		seq := binary.LittleEndian.Uint64(b)
		if seq != n+1 {
			break // not yet written whole (or overwritten): read again later
		}
		e := Event{Seq: seq, TimeNs: int64(binary.LittleEndian.Uint64(b[8:])),
			PID: int(int32(binary.LittleEndian.Uint32(b[16:]))), UID: int(int32(binary.LittleEndian.Uint32(b[20:]))),
			Syscall: int(binary.LittleEndian.Uint32(b[24:])), Comm: cstr(b[32:48]), Path: cstr(b[48 : 48+pathLen])}
		switch binary.LittleEndian.Uint32(b[28:]) {
		case actionRecord:
			e.Verdict = "record"
		case actionBlock:
			e.Verdict = "block"
		default:
			e.Verdict = "unknown"
		}
		evs = append(evs, e)
		next = n + 1
	}
	if next == 0 {
		next = from
	}
	return evs, next, lost, nil
}

// Monitor is the monitor object installed in a guest.
type Monitor struct {
	Shared   uint64 // the shared area
	Dispatch uint64 // secaas_dispatch
	Hook     *Hook
	Injected *Injected
	// host is what the host last wrote into the shared area, by offset
	// (the task layout, the policies, their syscall union, the blocked
	// numbers): the monitor only reads these.
	host map[uint64][]byte
}

// Install injects the monitor object (the caught vCPU makes the calls),
// fills in the task layout, and hooks the guest's dispatch.
func (t *Target) Install(ctx context.Context, obj []byte, lay TaskOffsets) (*Monitor, error) {
	inj, err := t.Inject(ctx, obj)
	if err != nil {
		return nil, err
	}
	m := &Monitor{Shared: inj.Image.Symbols["secaas_shared"], Dispatch: inj.Image.Symbols["secaas_dispatch"], Injected: inj}
	if m.Shared == 0 || m.Dispatch == 0 {
		return nil, errors.New("the object has no secaas_shared or secaas_dispatch")
	}
	magic, err := t.GDB.ReadMemory(m.Shared, 8)
	if err != nil || binary.LittleEndian.Uint64(magic) != sharedMagic {
		return nil, fmt.Errorf("the object's shared area is not this version's (%x %v)", magic, err)
	}
	l := make([]byte, 16)
	for i, v := range []uint32{lay.Pid, lay.Comm, lay.Cred, lay.UID} {
		binary.LittleEndian.PutUint32(l[4*i:], v)
	}
	if err := t.GDB.WriteMemory(m.Shared+offLayout, l); err != nil {
		return nil, err
	}
	cur := binary.LittleEndian.AppendUint64(nil, lay.Current)
	if err := t.GDB.WriteMemory(m.Shared+offCurrent, cur); err != nil {
		return nil, err
	}
	m.host = map[uint64][]byte{offLayout: l, offCurrent: cur, offBlock: make([]byte, maxSyscall/8)}
	if m.Hook, err = t.HookDispatch(m.Dispatch); err != nil {
		return nil, err
	}
	return m, nil
}

// SetPolicies replaces the monitor's policies (the guest is stopped while
// c is attached, so the change is whole when it runs on).
func (m *Monitor) SetPolicies(c *gdbstub.Client, ps []Policy) error {
	table, watch, err := EncodePolicies(ps)
	if err != nil {
		return err
	}
	if err := c.WriteMemory(m.Shared+offPolicy, table); err != nil {
		return err
	}
	if err := c.WriteMemory(m.Shared+offWatch, watch); err != nil {
		return err
	}
	if m.host != nil {
		m.host[offPolicy], m.host[offWatch] = table, watch
	}
	return nil
}
