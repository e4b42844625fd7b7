package linuxkern

import (
	"encoding/binary"
	"strings"
)

// Bounds on a path walk: the guest controls every dentry.
const (
	maxPathDepth = 64
	maxNameLen   = 255
)

// Details fills a process's uid, start time, executable path and command
// line from its task_struct. What cannot be read (a kernel thread has no exe; a hostile
// pointer) stays empty: details never fail a listing.
func (k *Kernel) Details(p *Process) {
	d := k.Detail
	if cred, err := k.U64(p.Task + uint64(d.Cred)); err == nil {
		var b [4]byte
		if k.readVA(b[:], cred+uint64(d.CredUID)) == nil {
			p.UID = binary.LittleEndian.Uint32(b[:])
		}
	}
	if st, err := k.U64(p.Task + uint64(d.StartTime)); err == nil {
		p.Start = st
	}
	if p.Kernel {
		return
	}
	mm, err := k.U64(p.Task + uint64(k.Task.Mm))
	if err != nil || mm == 0 {
		return
	}
	file, err := k.U64(mm + uint64(d.MmExeFile))
	if err != nil || file == 0 {
		return
	}
	p.Exe = k.filePath(file)
	if k.heldErr == nil {
		p.Cmdline, _, _ = k.Args(*p)
	}
}

// filePath resolves a struct file to a path the way d_path does: up the
// dentries to the root of each mount, then across to the mountpoint in the
// parent mount, until the root mount. Bounded; "" when it breaks.
func (k *Kernel) filePath(file uint64) string {
	d := k.Detail
	vfsmnt, err1 := k.U64(file + uint64(d.FilePath+d.PathMnt))
	dentry, err2 := k.U64(file + uint64(d.FilePath+d.PathDentry))
	if err1 != nil || err2 != nil {
		return ""
	}
	var parts []string
	for i := 0; ; i++ {
		if i == maxPathDepth { // a cycle, or deeper than any real path
			return ""
		}
		root, err := k.U64(vfsmnt + uint64(d.VfsmountRoot))
		if err != nil {
			return ""
		}
		if dentry == root { // top of this mount: cross to its mountpoint
			mnt := vfsmnt - uint64(d.MountMnt)
			parent, err1 := k.U64(mnt + uint64(d.MountParent))
			mp, err2 := k.U64(mnt + uint64(d.MountMountpoint))
			if err1 != nil || err2 != nil {
				return ""
			}
			if parent == mnt { // the root mount
				if len(parts) == 0 {
					return "/"
				}
				return joinPath(parts)
			}
			vfsmnt, dentry = parent+uint64(d.MountMnt), mp
			continue
		}
		name, ok := k.dentryName(dentry)
		if !ok {
			return ""
		}
		parts = append(parts, name)
		parent, err := k.U64(dentry + uint64(d.DentryParent))
		if err != nil || parent == dentry {
			return joinPath(parts)
		}
		dentry = parent
	}
}

// joinPath makes a path of names collected leaf first.
func joinPath(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(parts[i])
	}
	return b.String()
}

func (k *Kernel) dentryName(dentry uint64) (string, bool) {
	var lb [4]byte
	if k.readVA(lb[:], dentry+uint64(k.Detail.DentryNameLen)) != nil {
		return "", false
	}
	n := binary.LittleEndian.Uint32(lb[:])
	if n == 0 || n > maxNameLen {
		return "", false
	}
	ptr, err := k.U64(dentry + uint64(k.Detail.DentryName))
	if err != nil {
		return "", false
	}
	name := make([]byte, n)
	if k.readVA(name, ptr) != nil {
		return "", false
	}
	for _, c := range name {
		if c == '/' || c == 0 {
			return "", false
		}
	}
	return string(name), true
}
