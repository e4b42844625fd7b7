package linuxkern

import (
	"errors"
	"fmt"
)

// HeldLayout holds the offsets used to list what a process holds: its
// file descriptor table, the sockets behind it, its memory maps and its
// argument and environment areas — all from the guest's BTF.
type HeldLayout struct {
	TaskFiles                               uint32 // task_struct.files
	FilesFdt                                uint32 // files_struct.fdt
	FdtMaxFds, FdtFd, FdtOpenFds            uint32 // fdtable
	FileInode, FileOp, FilePrivate          uint32 // file
	InodeIno, InodeMode                     uint32 // inode
	SocketSk                                uint32 // socket.sk
	SkFamily, SkState, SkType, SkProtocol   uint32 // sock (sk_type, sk_protocol: u16 since 5.6)
	SkDaddr, SkRcvSaddr, SkDport, SkNum     uint32 // sock_common
	SkV6Daddr, SkV6RcvSaddr                 uint32 // sock_common (0 without IPv6)
	UnixAddr, UnixPath                      uint32 // unix_sock
	UnixAddrLen, UnixAddrName               uint32 // unix_address
	Maple                                   bool   // memory maps in a maple tree (6.1+), else a vm_next list
	MmMaps                                  uint32 // mm_struct.mm_mt.ma_root, or mm_struct.mmap
	VmaNext                                 uint32 // vm_area_struct.vm_next (list kernels)
	R64Pivot, R64Slot, R64Meta              uint32 // maple_range_64
	A64Pivot, A64Slot, A64Meta              uint32 // maple_arange_64
	VmaStart, VmaEnd, VmaMm, VmaFlags       uint32
	VmaPgoff, VmaFile                       uint32
	VmaOps, VmaPrivate, SpecialName         uint32 // vm_ops, vm_private_data, vm_special_mapping.name
	MmPgd, MmArgStart, MmArgEnd             uint32
	MmEnvStart, MmEnvEnd                    uint32
	MmStartBrk, MmBrk, MmStartStack, MmVdso uint32
}

// heldLayout reads HeldLayout. It does not fail Open: a kernel whose BTF
// lacks a member still lists processes; only the held-object listings
// then return the error.
func (k *Kernel) heldLayout() error {
	var errs []error
	off := k.offsets(&errs)
	h := HeldLayout{
		TaskFiles: off("task_struct", "files"), FilesFdt: off("files_struct", "fdt"),
		FdtMaxFds: off("fdtable", "max_fds"), FdtFd: off("fdtable", "fd"), FdtOpenFds: off("fdtable", "open_fds"),
		FileInode: off("file", "f_inode"), FileOp: off("file", "f_op"), FilePrivate: off("file", "private_data"),
		InodeIno: off("inode", "i_ino"), InodeMode: off("inode", "i_mode"),
		SocketSk: off("socket", "sk"),
		SkFamily: off("sock_common", "skc_family"), SkState: off("sock_common", "skc_state"),
		SkType: off("sock", "sk_type"), SkProtocol: off("sock", "sk_protocol"),
		SkDaddr: off("sock_common", "skc_daddr"), SkRcvSaddr: off("sock_common", "skc_rcv_saddr"),
		SkDport: off("sock_common", "skc_dport"), SkNum: off("sock_common", "skc_num"),
		UnixAddr: off("unix_sock", "addr"), UnixPath: off("unix_sock", "path"),
		UnixAddrLen: off("unix_address", "len"), UnixAddrName: off("unix_address", "name"),
		VmaStart: off("vm_area_struct", "vm_start"), VmaEnd: off("vm_area_struct", "vm_end"),
		VmaMm: off("vm_area_struct", "vm_mm"), VmaFlags: off("vm_area_struct", "vm_flags"),
		VmaPgoff: off("vm_area_struct", "vm_pgoff"), VmaFile: off("vm_area_struct", "vm_file"),
		VmaOps: off("vm_area_struct", "vm_ops"), VmaPrivate: off("vm_area_struct", "vm_private_data"),
		SpecialName: off("vm_special_mapping", "name"),
		MmPgd:       off("mm_struct", "pgd"), MmArgStart: off("mm_struct", "arg_start"), MmArgEnd: off("mm_struct", "arg_end"),
		MmEnvStart: off("mm_struct", "env_start"), MmEnvEnd: off("mm_struct", "env_end"),
		MmStartBrk: off("mm_struct", "start_brk"), MmBrk: off("mm_struct", "brk"), MmStartStack: off("mm_struct", "start_stack"),
		MmVdso: off("mm_struct", "context", "vdso"),
	}
	if v6, err := offsetOf(k.BTF, "sock_common", "skc_v6_daddr"); err == nil {
		h.SkV6Daddr, h.SkV6RcvSaddr = v6, off("sock_common", "skc_v6_rcv_saddr")
	}
	if mt, err := offsetOf(k.BTF, "mm_struct", "mm_mt"); err == nil {
		h.Maple, h.MmMaps = true, mt+off("maple_tree", "ma_root")
		h.R64Pivot, h.R64Slot = off("maple_range_64", "pivot"), off("maple_range_64", "slot")
		h.A64Pivot, h.A64Slot = off("maple_arange_64", "pivot"), off("maple_arange_64", "slot")
		h.R64Meta = off("maple_range_64", "meta") + off("maple_metadata", "end")
		h.A64Meta = off("maple_arange_64", "meta") + off("maple_metadata", "end")
	} else {
		h.MmMaps, h.VmaNext = off("mm_struct", "mmap"), off("vm_area_struct", "vm_next")
	}
	k.Held = h
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("what processes hold is not listable on this kernel: %w", err)
	}
	return nil
}
