package linuxkern

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// TaskLayout holds task_struct member offsets, from the guest's BTF.
type TaskLayout struct {
	Tasks, Pid, Tgid, Comm, RealParent, ExitState, Flags, Mm uint32
	ThreadPid                                                uint32 // struct pid *thread_pid
	PidLinks                                                 uint32 // struct hlist_node pid_links[PIDTYPE_MAX]; [0] is PIDTYPE_PID
}

// PidLayout holds struct pid member offsets.
type PidLayout struct {
	Tasks   uint32 // struct hlist_head tasks[PIDTYPE_MAX]
	Numbers uint32 // struct upid numbers[]; numbers[0].nr is the pid in the root namespace
}

// ModuleLayout holds struct module member offsets.
type ModuleLayout struct {
	State, List, Name, NameLen uint32
	MkobjMod                   uint32 // mkobj.mod: points back at the module itself
	CoreBase, CoreSize         uint32 // core_layout (6.1) or mem[MOD_TEXT] (6.4+): base, size
}

// layouts reads every structure layout the monitors use from the guest's
// own BTF: no profile, no per-build table.
func (k *Kernel) layouts() error {
	var errs []error
	off := k.offsets(&errs)
	k.Task = TaskLayout{
		Tasks: off("task_struct", "tasks"), Pid: off("task_struct", "pid"), Tgid: off("task_struct", "tgid"),
		Comm: off("task_struct", "comm"), RealParent: off("task_struct", "real_parent"),
		ExitState: off("task_struct", "exit_state"), Flags: off("task_struct", "flags"), Mm: off("task_struct", "mm"),
		ThreadPid: off("task_struct", "thread_pid"), PidLinks: off("task_struct", "pid_links"),
	}
	k.Pid = PidLayout{Tasks: off("pid", "tasks"), Numbers: off("pid", "numbers")}
	k.Module = ModuleLayout{State: off("module", "state"), List: off("module", "list"), Name: off("module", "name"),
		MkobjMod: off("module", "mkobj", "mod")}
	if o, err := offsetOf(k.BTF, "module", "core_layout", "base"); err == nil {
		k.Module.CoreBase = o
		k.Module.CoreSize = off("module", "core_layout", "size")
	} else { // 6.4+: struct module_memory mem[MOD_MEM_NUM_TYPES], mem[0] is MOD_TEXT
		k.Module.CoreBase = off("module", "mem", "base")
		k.Module.CoreSize = off("module", "mem", "size")
	}
	if n, err := arrayLen(k.BTF, "module", "name"); err == nil && n > 1 && n <= 256 {
		k.Module.NameLen = n
	} else {
		errs = append(errs, fmt.Errorf("btf: module.name: length %d %v", n, err))
	}
	return errors.Join(errs...)
}

// member finds a member by name in a struct or union, looking into
// anonymous members, and returns its byte offset and type.
func member(ms []btf.Member, name string, base uint32) (uint32, btf.Type, bool) {
	for _, m := range ms {
		off := base + uint32(m.Offset)/8
		if m.Name == name {
			return off, m.Type, true
		}
		if m.Name == "" {
			var inner []btf.Member
			switch t := btf.UnderlyingType(m.Type).(type) {
			case *btf.Struct:
				inner = t.Members
			case *btf.Union:
				inner = t.Members
			}
			if o, typ, ok := member(inner, name, off); ok {
				return o, typ, true
			}
		}
	}
	return 0, nil, false
}

// fieldType resolves a member path ("module", "mkobj", "mod"); arrays on the
// way are entered at element 0.
func fieldType(spec *btf.Spec, path ...string) (uint32, btf.Type, error) {
	var st *btf.Struct
	if err := spec.TypeByName(path[0], &st); err != nil {
		return 0, nil, fmt.Errorf("btf: struct %s: %w", path[0], err)
	}
	var t btf.Type = st
	var off uint32
	for _, name := range path[1:] {
		u := btf.UnderlyingType(t)
		if a, ok := u.(*btf.Array); ok {
			u = btf.UnderlyingType(a.Type)
		}
		var ms []btf.Member
		switch s := u.(type) {
		case *btf.Struct:
			ms = s.Members
		case *btf.Union:
			ms = s.Members
		default:
			return 0, nil, fmt.Errorf("btf: %v: %s is not a struct", path, name)
		}
		o, mt, ok := member(ms, name, 0)
		if !ok {
			return 0, nil, fmt.Errorf("btf: %v: no member %s", path, name)
		}
		off += o
		t = mt
	}
	return off, t, nil
}

func offsetOf(spec *btf.Spec, path ...string) (uint32, error) {
	o, _, err := fieldType(spec, path...)
	return o, err
}

func arrayLen(spec *btf.Spec, path ...string) (uint32, error) {
	_, t, err := fieldType(spec, path...)
	if err != nil {
		return 0, err
	}
	a, ok := btf.UnderlyingType(t).(*btf.Array)
	if !ok {
		return 0, fmt.Errorf("btf: %v is not an array", path)
	}
	return a.Nelems, nil
}

// DetailLayout holds the offsets used for a process's details: its
// credentials, start time and executable path (mm->exe_file, resolved
// through dentries and mounts the way d_path does).
type DetailLayout struct {
	Cred, CredUID, StartTime, MmExeFile     uint32
	FilePath, PathMnt, PathDentry           uint32
	DentryParent, DentryNameLen, DentryName uint32
	MountParent, MountMountpoint, MountMnt  uint32
	VfsmountRoot                            uint32
}

func (k *Kernel) detailLayout() error {
	var errs []error
	off := k.offsets(&errs)
	name := off("dentry", "d_name")
	k.Detail = DetailLayout{
		Cred: off("task_struct", "cred"), CredUID: off("cred", "uid"), StartTime: off("task_struct", "start_time"),
		MmExeFile: off("mm_struct", "exe_file"), FilePath: off("file", "f_path"),
		PathMnt: off("path", "mnt"), PathDentry: off("path", "dentry"),
		DentryParent: off("dentry", "d_parent"), DentryNameLen: name + off("qstr", "len"), DentryName: name + off("qstr", "name"),
		MountParent: off("mount", "mnt_parent"), MountMountpoint: off("mount", "mnt_mountpoint"), MountMnt: off("mount", "mnt"),
		VfsmountRoot: off("vfsmount", "mnt_root"),
	}
	return errors.Join(errs...)
}

// offsets returns a lookup of member offsets in the guest's BTF that
// collects its errors in errs (so that one report names every missing
// member).
func (k *Kernel) offsets(errs *[]error) func(path ...string) uint32 {
	return func(path ...string) uint32 {
		o, err := offsetOf(k.BTF, path...)
		if err != nil {
			*errs = append(*errs, err)
		}
		return o
	}
}

// Offset is a member's offset by the guest's own BTF: Offset("task_struct",
// "cred"), Offset("cred", "uid").
func (k *Kernel) Offset(path ...string) (uint32, error) { return offsetOf(k.BTF, path...) }
