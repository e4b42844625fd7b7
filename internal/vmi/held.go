package vmi

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"secaas/internal/linuxkern"
)

// Holder is a process whose holdings are listed: every listed process,
// and the hidden ones (a rootkit hides a process from ps, not its files).
type holder struct {
	linuxkern.Process
	hidden bool
}

// holders are the processes with an address space (kernel threads hold no
// files of their own), hidden ones last.
func holders(ps []linuxkern.Process, hidden []linuxkern.Candidate) []holder {
	var out []holder
	for _, p := range ps {
		if !p.Kernel {
			out = append(out, holder{Process: p})
		}
	}
	for _, c := range hidden {
		if !c.Kernel {
			out = append(out, holder{Process: c.Process, hidden: true})
		}
	}
	return out
}

// gone says whether a task changed under the walk: it exited, or its
// memory now holds another task. Its holdings are then not an error.
func gone(k *linuxkern.Kernel, p linuxkern.Process) bool {
	now, err := k.ReadTask(p.Task)
	return err != nil || now.ExitState != 0 || now.PID != p.PID || now.Comm != p.Comm
}

// retry runs a walk of one process, again once if it fails (the guest
// runs while it is read), and reports a failure only if the process is
// still there: a task that exited under the walk is a race, not an error.
func retry[T any](k *linuxkern.Kernel, r *Report, what string, h holder, walk func(linuxkern.Process) ([]T, error)) []T {
	rows, err := walk(h.Process)
	if err == nil {
		return rows
	}
	time.Sleep(5 * time.Millisecond)
	if rows, err = walk(h.Process); err == nil {
		return rows
	}
	if gone(k, h.Process) {
		r.Scan[what+"_raced"]++
		return nil
	}
	r.Partial = append(r.Partial, fmt.Sprintf("%s of pid %d (%s): %v", what, h.PID, h.Comm, err))
	return rows
}

// held lists the open files, sockets and memory maps of each holder, as
// asked.
func (s *Session) held(k *linuxkern.Kernel, hs []holder, ind map[string]bool, r *Report) {
	if err := k.HeldErr(); err != nil {
		r.Partial = append(r.Partial, err.Error())
		return
	}
	for _, h := range hs {
		if ind[Files] || ind[Sockets] {
			for _, f := range retry(k, r, "files", h, k.Files) {
				f.HiddenProcess = h.hidden
				if f.Sock != nil {
					f.Sock.HiddenProcess = h.hidden
					if ind[Sockets] {
						r.Sockets = append(r.Sockets, *f.Sock)
					}
				}
				if ind[Files] {
					r.Files = append(r.Files, f)
				}
			}
		}
		if ind[Maps] {
			for _, m := range retry(k, r, "maps", h, k.Maps) {
				m.HiddenProcess = h.hidden
				r.Maps = append(r.Maps, m)
			}
		}
	}
}

// secretName matches environment variable names whose values are likely
// secrets: those are never printed.
var secretName = regexp.MustCompile(`(?i)pass|secret|token|key|cred|auth|cookie|session|private`)

// environ fills a process's environment, with the values of secret-looking
// variables replaced by <redacted>.
func environ(k *linuxkern.Kernel, p *linuxkern.Process) {
	_, env, err := k.Args(*p)
	if err != nil {
		return
	}
	for i, kv := range env {
		if name, _, ok := strings.Cut(kv, "="); ok && secretName.MatchString(name) {
			env[i] = name + "=<redacted>"
		}
	}
	p.Env = env
}
