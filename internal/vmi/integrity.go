package vmi

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"secaas/internal/linuxkern"
)

// HiddenSocket is a socket held by a process whose line in the guest's
// /proc/net listing is produced by a hooked function: the hook can drop
// it from netstat and ss inside the guest. Which of the sockets a hook
// really drops cannot be told from memory alone (it would take running
// the hook), so each one it can reach is reported, with the hook.
type HiddenSocket struct {
	linuxkern.Socket
	Listing  string            `json:"listing"` // the /proc file, e.g. /proc/net/tcp
	Hook     linuxkern.Finding `json:"hook"`
	Evidence string            `json:"evidence"`
}

// procListings maps the functions that print /proc/net lines to the file
// and the sockets they print.
var procListings = map[string]struct {
	file, family string
	protos       []string
}{
	"tcp4_seq_show":   {"/proc/net/tcp", "inet", []string{"tcp", "mptcp"}},
	"tcp6_seq_show":   {"/proc/net/tcp6", "inet6", []string{"tcp", "mptcp"}},
	"udp4_seq_show":   {"/proc/net/udp", "inet", []string{"udp"}},
	"udp6_seq_show":   {"/proc/net/udp6", "inet6", []string{"udp"}},
	"raw_seq_show":    {"/proc/net/raw", "inet", []string{"raw", "icmp"}},
	"unix_seq_show":   {"/proc/net/unix", "unix", []string{"unix"}},
	"packet_seq_show": {"/proc/net/packet", "packet", []string{"packet"}},
}

// integrityConfirmDelay separates the two integrity checks of a cycle: a
// finding must be in both (a kernel being patched by its own code, a
// module mid-load, is read torn).
const integrityConfirmDelay = 20 * time.Millisecond

// integrity checks the kernel's control flow twice and keeps what both
// checks found; owners are named from the listed and hidden modules.
func (s *Session) integrity(k *linuxkern.Kernel, mods []linuxkern.Module, r *Report) {
	own := func() []linuxkern.Region {
		if s.Own == nil {
			return nil
		}
		return s.Own()
	}
	first, err := s.checkIntegrity(k, mods, own())
	if err != nil {
		r.Partial = append(r.Partial, fmt.Sprintf("integrity: %v", err))
		return
	}
	if len(first.Findings) > 0 {
		// The second check's findings are kept, those the first had too:
		// the later reading, and secaas's own regions as they are now (a
		// monitor injected between the checks is known by then).
		time.Sleep(integrityConfirmDelay)
		second, err := s.checkIntegrity(k, mods, own())
		if err != nil {
			r.Partial = append(r.Partial, fmt.Sprintf("integrity: %v", err))
			return
		}
		before := map[string]bool{}
		for _, f := range first.Findings {
			before[f.Key()] = true
		}
		kept := []linuxkern.Finding{}
		for _, f := range second.Findings {
			if before[f.Key()] {
				kept = append(kept, f)
				delete(before, f.Key())
			}
		}
		r.Scan["integrity_raced"] += len(before)
		second.Findings = kept
		first = second
	}
	for _, c := range r.HiddenModules {
		first.Findings = append(first.Findings, linuxkern.Finding{Kind: "hidden_module", Severity: "alert", Target: c.Name, Site: c.Addr,
			Addr: c.Base, Owner: c.Name, Evidence: strings.Join(c.Evidence, "; ")})
	}
	for _, p := range first.Partial {
		r.Partial = append(r.Partial, "integrity: "+p)
	}
	first.Partial = nil
	r.Integrity = first
}

// checkIntegrity is one integrity check: the kernel's invariants, and with
// the guest's own kernel image, the comparison with it.
func (s *Session) checkIntegrity(k *linuxkern.Kernel, mods []linuxkern.Module, own []linuxkern.Region) (*linuxkern.Integrity, error) {
	in, err := k.CheckIntegrity(mods, own)
	if err != nil || s.Image == nil {
		return in, err
	}
	img, err := k.CompareImage(s.Image, mods, own)
	if err != nil {
		in.Partial = append(in.Partial, fmt.Sprintf("kernel image: %v", err))
		return in, nil
	}
	for kind, n := range img.Checked {
		in.Checked[kind] += n
	}
	in.Findings = append(in.Findings, img.Findings...)
	in.Partial = append(in.Partial, img.Partial...)
	return in, nil
}

// hiddenSockets: the sockets whose /proc/net listing is printed by a
// function the integrity check found hooked from outside the kernel.
func hiddenSockets(in *linuxkern.Integrity, socks []linuxkern.Socket) []HiddenSocket {
	out := []HiddenSocket{}
	if in == nil {
		return out
	}
	for _, f := range in.Findings {
		l, ok := procListings[f.Target]
		if !ok || f.Severity != "alert" {
			continue
		}
		for _, s := range socks {
			if s.Family != l.family || !slices.Contains(l.protos, s.Proto) {
				continue
			}
			out = append(out, HiddenSocket{Socket: s, Listing: l.file, Hook: f,
				Evidence: fmt.Sprintf("%s prints this socket's line in %s and is hooked (%s) by %s", f.Target, l.file, f.Kind, f.Owner)})
		}
	}
	return out
}
