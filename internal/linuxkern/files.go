package linuxkern

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Bounds on an fd table walk: the guest controls max_fds and the bitmap.
const (
	MaxFds      = 1 << 20 // the kernel's own NR_OPEN
	MaxOpenFile = 1 << 16 // files listed per process
)

// ErrHostile is wrapped by walks that stop on memory no live kernel would
// hold (a count past the kernel's own limits, a cycle).
var ErrHostile = errors.New("implausible kernel structure")

// OpenFile is one open file descriptor of a process.
type OpenFile struct {
	PID   int32   `json:"pid"`
	Comm  string  `json:"comm"`
	FD    int     `json:"fd"`
	Type  string  `json:"type"` // file, dir, socket, pipe, fifo, char, block, link, anon
	Path  string  `json:"path"` // as /proc/PID/fd shows it: a path, socket:[INODE], pipe:[INODE], anon_inode:[NAME]
	Inode uint64  `json:"inode"`
	File  uint64  `json:"file"` // struct file address
	Sock  *Socket `json:"-"`    // the socket, for Type socket
	// HiddenProcess: the holder is a process hidden from the task list
	// (set by the caller, which knows).
	HiddenProcess bool `json:"hidden_process,omitempty"`
}

// File types by inode mode (S_IFMT).
func fileType(mode uint16) string {
	switch mode & 0o170000 {
	case 0o140000:
		return "socket"
	case 0o120000:
		return "link"
	case 0o100000:
		return "file"
	case 0o060000:
		return "block"
	case 0o040000:
		return "dir"
	case 0o020000:
		return "char"
	case 0o010000:
		return "fifo"
	}
	return "anon" // anon_inode files have no type bits
}

// HeldErr says why what processes hold cannot be listed on this kernel
// (nil when it can).
func (k *Kernel) HeldErr() error { return k.heldErr }

// Files lists a process's open file descriptors from its fd table
// (task->files->fdt), resolving each file's path the way /proc/PID/fd
// does and decoding sockets. Kernel threads and exited tasks hold none.
// The walk is bounded: a max_fds past the kernel's own limit, or more
// than MaxOpenFile open descriptors, stops it with ErrHostile and what was
// read so far.
func (k *Kernel) Files(p Process) ([]OpenFile, error) {
	if k.heldErr != nil {
		return nil, k.heldErr
	}
	h := k.Held
	files, err := k.U64(p.Task + uint64(h.TaskFiles))
	if err != nil {
		return nil, fmt.Errorf("pid %d: files: %w", p.PID, err)
	}
	if files == 0 {
		return nil, nil
	}
	fdt, err := k.U64(files + uint64(h.FilesFdt))
	if err != nil {
		return nil, fmt.Errorf("pid %d: fdtable: %w", p.PID, err)
	}
	var b [4]byte
	if err := k.readVA(b[:], fdt+uint64(h.FdtMaxFds)); err != nil {
		return nil, fmt.Errorf("pid %d: max_fds: %w", p.PID, err)
	}
	maxFds := binary.LittleEndian.Uint32(b[:])
	if maxFds > MaxFds {
		return nil, fmt.Errorf("pid %d: %w: max_fds %d", p.PID, ErrHostile, maxFds)
	}
	arr, err1 := k.U64(fdt + uint64(h.FdtFd))
	bitmap, err2 := k.U64(fdt + uint64(h.FdtOpenFds))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pid %d: fdtable: %w", p.PID, err)
	}
	var out []OpenFile
	for w := uint32(0); w*64 < maxFds; w++ {
		word, err := k.U64(bitmap + uint64(w)*8)
		if err != nil {
			return out, fmt.Errorf("pid %d: open_fds: %w", p.PID, err)
		}
		for bit := uint32(0); word != 0 && bit < 64; bit++ {
			if word&(1<<bit) == 0 {
				continue
			}
			word &^= 1 << bit
			fd := w*64 + bit
			if fd >= maxFds {
				break
			}
			f, err := k.U64(arr + uint64(fd)*8)
			if err != nil {
				return out, fmt.Errorf("pid %d: fd %d: %w", p.PID, fd, err)
			}
			if f == 0 { // reserved by open(), not yet installed
				continue
			}
			if len(out) == MaxOpenFile {
				return out, fmt.Errorf("pid %d: %w: more than %d open files", p.PID, ErrHostile, MaxOpenFile)
			}
			of, err := k.openFile(f)
			if err != nil {
				return out, fmt.Errorf("pid %d: fd %d: %w", p.PID, fd, err)
			}
			of.PID, of.Comm, of.FD = p.PID, p.Comm, int(fd)
			if of.Sock != nil {
				of.Sock.PID, of.Sock.Comm, of.Sock.FD = p.PID, p.Comm, int(fd)
			}
			out = append(out, of)
		}
	}
	return out, nil
}

// openFile decodes one struct file: its inode's type and number, its
// path, and for a socket what the socket is.
func (k *Kernel) openFile(f uint64) (OpenFile, error) {
	h := k.Held
	of := OpenFile{File: f}
	inode, err := k.U64(f + uint64(h.FileInode))
	if err != nil {
		return of, fmt.Errorf("f_inode: %w", err)
	}
	var mb [2]byte
	if err := k.readVA(mb[:], inode+uint64(h.InodeMode)); err != nil {
		return of, fmt.Errorf("i_mode: %w", err)
	}
	if of.Inode, err = k.U64(inode + uint64(h.InodeIno)); err != nil {
		return of, fmt.Errorf("i_ino: %w", err)
	}
	of.Type = fileType(binary.LittleEndian.Uint16(mb[:]))
	path := k.filePath(f)
	switch {
	case of.Type == "socket":
		of.Path = fmt.Sprintf("socket:[%d]", of.Inode)
		s, err := k.socketOf(f)
		if err != nil {
			return of, err
		}
		s.Inode = of.Inode
		of.Sock = &s
	case of.Type == "fifo" && path == "": // pipefs has no names
		of.Type, of.Path = "pipe", fmt.Sprintf("pipe:[%d]", of.Inode)
	case of.Type == "anon":
		of.Path = "anon_inode:" + strings.TrimPrefix(path, "/")
	default:
		of.Path = path
	}
	return of, nil
}
