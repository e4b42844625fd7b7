package vmi

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"secaas/internal/guestmem"
	"secaas/internal/linuxkern"
)

// Indicators a report can hold (tenant.VMIIndicators).
const (
	Processes       = "processes"
	HiddenProcesses = "hidden_processes"
	Modules         = "modules"
	HiddenModules   = "hidden_modules"
	Files           = "files"     // open files of every process, hidden ones included
	Sockets         = "sockets"   // sockets of every process, hidden ones included, and hidden ones
	Integrity       = "integrity" // diverted kernel control flow: syscall dispatch, IDT, inline, ftrace and kprobe hooks
	// Asked for by the CLI only (too bulky for a report every cycle).
	Maps    = "maps"    // memory maps of every process
	Environ = "environ" // each process's environment, secret-looking values redacted
)

// AllIndicators asks for everything a monitoring policy can ask for.
var AllIndicators = map[string]bool{Processes: true, HiddenProcesses: true, Modules: true, HiddenModules: true,
	Files: true, Sockets: true, Integrity: true}

// Report is one inspection of a guest's memory.
type Report struct {
	At              time.Time                      `json:"at"`
	TookMS          float64                        `json:"took_ms"`
	Kernel          string                         `json:"kernel"`
	Source          string                         `json:"source"` // shared, elf, lime, raw
	RAM             int64                          `json:"ram_bytes"`
	PagingLevels    int                            `json:"paging_levels"`
	Processes       []linuxkern.Process            `json:"processes,omitempty"`
	HiddenProcesses []linuxkern.Candidate          `json:"hidden_processes"`
	Modules         []linuxkern.Module             `json:"modules,omitempty"`
	HiddenModules   []linuxkern.ModuleCandidate    `json:"hidden_modules"`
	Files           []linuxkern.OpenFile           `json:"files,omitempty"`
	Sockets         []linuxkern.Socket             `json:"sockets,omitempty"`
	Maps            []linuxkern.Map                `json:"maps,omitempty"`
	Integrity       *linuxkern.Integrity           `json:"integrity,omitempty"`
	HiddenSockets   []HiddenSocket                 `json:"hidden_sockets,omitempty"`
	Scan            map[string]int                 `json:"scan,omitempty"` // candidates by status
	Partial         []string                       `json:"partial,omitempty"`
	scanned         map[string]linuxkern.ScanStats // for benchmarks
	listingWhole    bool                           // every process was listed and read: no socket can be missing
}

// Session inspects one guest memory source, keeping what it recovered of
// the kernel between cycles (kallsyms, BTF) until the guest reboots.
type Session struct {
	Mem *guestmem.Mem
	// Own says what secaas itself injected into the guest's kernel (the
	// syscall monitor): hooks into it are secaas's, reported as notices.
	Own func() []linuxkern.Region
	// Image is the guest's own kernel image, if known: integrity then
	// also compares the kernel's code and syscall table with it.
	Image *linuxkern.Image
	k     *linuxkern.Kernel
	// sig is the VMCOREINFO text the kernel was recovered from: when it
	// changes (a reboot, a new KASLR slide), the kernel is recovered again.
	sig []byte
}

// NewSession starts a session over mem.
func NewSession(mem *guestmem.Mem) *Session { return &Session{Mem: mem} }

// Kernel returns the guest kernel, recovering it if needed.
func (s *Session) Kernel() (*linuxkern.Kernel, error) {
	if s.k != nil {
		cur := make([]byte, len(s.sig))
		if _, err := s.Mem.ReadAt(cur, s.k.Info.Addr); err == nil && bytes.Equal(cur, s.sig) {
			return s.k, nil
		}
		s.k = nil
	}
	k, err := linuxkern.Open(s.Mem, s.Mem.Size())
	if err != nil {
		return nil, err
	}
	sig := make([]byte, 256)
	n, _ := s.Mem.ReadAt(sig, k.Info.Addr)
	s.k, s.sig = k, sig[:n]
	return k, nil
}

// listRetries is how often a torn task or module list is walked again.
const listRetries = 3

func listProcesses(k *linuxkern.Kernel) ([]linuxkern.Process, error) {
	var err error
	for range listRetries {
		var ps []linuxkern.Process
		if ps, err = k.ListProcesses(); err == nil {
			return ps, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}

func listModules(k *linuxkern.Kernel) ([]linuxkern.Module, error) {
	var err error
	for range listRetries {
		var ms []linuxkern.Module
		if ms, err = k.ListModules(); err == nil {
			return ms, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, err
}

// Inspect runs one monitoring cycle for the indicators asked for.
func (s *Session) Inspect(ind map[string]bool) (*Report, error) {
	t0 := time.Now()
	k, err := s.Kernel()
	if err != nil {
		return nil, err
	}
	r := &Report{At: t0.UTC(), Kernel: k.Info.OSRelease, Source: s.Mem.Format, RAM: s.Mem.RAM(), PagingLevels: k.Levels,
		HiddenProcesses: []linuxkern.Candidate{}, HiddenModules: []linuxkern.ModuleCandidate{},
		Scan: map[string]int{}, scanned: map[string]linuxkern.ScanStats{}}
	held := ind[Files] || ind[Sockets] || ind[Maps] || ind[Environ]
	if ind[Processes] || ind[HiddenProcesses] || held {
		ps, err := listProcesses(k)
		switch {
		case err != nil:
			r.Partial = append(r.Partial, fmt.Sprintf("task list: %v (hidden processes not assessed)", err))
		case ind[HiddenProcesses]:
			if err := s.hiddenProcesses(k, ps, r); err != nil {
				r.Partial = append(r.Partial, fmt.Sprintf("process scan: %v", err))
			}
		}
		if ind[Processes] || ind[Environ] {
			for i := range ps {
				k.Details(&ps[i])
				if ind[Environ] {
					environ(k, &ps[i])
				}
			}
			r.Processes = ps
		}
		if held && err == nil {
			s.held(k, holders(ps, r.HiddenProcesses), ind, r)
		}
		r.listingWhole = err == nil && len(r.Partial) == 0
	}
	if ind[Modules] || ind[HiddenModules] || ind[Integrity] {
		ms, err := listModules(k)
		switch {
		case err != nil:
			r.Partial = append(r.Partial, fmt.Sprintf("module list: %v (hidden modules and integrity not assessed)", err))
		default:
			if ind[HiddenModules] || ind[Integrity] {
				if err := s.hiddenModules(k, ms, r); err != nil {
					r.Partial = append(r.Partial, fmt.Sprintf("module scan: %v", err))
				}
			}
			if ind[Integrity] {
				// Owners are named from every module known, hidden ones too.
				all := append([]linuxkern.Module{}, ms...)
				for _, c := range r.HiddenModules {
					all = append(all, c.Module)
				}
				s.integrity(k, all, r)
				if ind[Sockets] {
					r.HiddenSockets = hiddenSockets(r.Integrity, r.Sockets)
				}
			}
		}
		if ind[Modules] {
			r.Modules = ms
		}
	}
	r.TookMS = float64(time.Since(t0).Microseconds()) / 1000
	return r, nil
}

// hiddenProcesses scans for tasks and confirms each hidden one against a
// second walk of the list made after the scan.
func (s *Session) hiddenProcesses(k *linuxkern.Kernel, listed []linuxkern.Process, r *Report) error {
	cands, st, err := k.ScanTasks(s.Mem.Size(), listed)
	r.scanned["tasks"] = st
	if err != nil {
		return err
	}
	var suspects []linuxkern.Candidate
	for _, c := range cands {
		r.Scan[c.Status]++
		if c.Status == "hidden" {
			suspects = append(suspects, c)
		}
	}
	if len(suspects) == 0 {
		return nil
	}
	// Confirm twice, the second time a moment later: a task in the middle
	// of fork or exit is off the list for a few microseconds, and the
	// guest runs on while the first walk and re-read are made.
	for round := 0; round < hiddenConfirmations && len(suspects) > 0; round++ {
		if round > 0 {
			time.Sleep(hiddenConfirmDelay)
		}
		again, err := listProcesses(k)
		if err != nil {
			return fmt.Errorf("confirming %d suspects: %w", len(suspects), err)
		}
		recheck, _, err := k.ScanTasksAt(suspects, again)
		if err != nil {
			return err
		}
		suspects = suspects[:0]
		for _, c := range recheck {
			if c.Status == "hidden" {
				suspects = append(suspects, c)
			} else {
				r.Scan["raced"]++
			}
		}
	}
	for _, c := range suspects {
		k.Details(&c.Process)
		r.HiddenProcesses = append(r.HiddenProcesses, c)
	}
	return nil
}

// How a hidden task is confirmed: walks of the list and re-reads of the
// task after the scan, the later ones this long after the first.
const (
	hiddenConfirmations = 2
	hiddenConfirmDelay  = 20 * time.Millisecond
)

// hiddenModules scans for modules and confirms each hidden one the same way.
func (s *Session) hiddenModules(k *linuxkern.Kernel, listed []linuxkern.Module, r *Report) error {
	cands, st, err := k.ScanModules(s.Mem.Size(), listed)
	r.scanned["modules"] = st
	if err != nil {
		return err
	}
	var suspects int
	for _, c := range cands {
		if c.Status == "hidden" {
			suspects++
		}
	}
	if suspects == 0 {
		return nil
	}
	again, err := listModules(k)
	if err != nil {
		return fmt.Errorf("confirming %d suspect modules: %w", suspects, err)
	}
	inList := map[uint64]bool{}
	for _, m := range again {
		inList[m.Addr] = true
	}
	for _, c := range cands {
		if c.Status != "hidden" {
			continue
		}
		if inList[c.Addr] {
			r.Scan["modules_raced"]++
			continue
		}
		r.HiddenModules = append(r.HiddenModules, c)
	}
	return nil
}

// ScanStats returns the scan statistics of the last Inspect (tasks,
// modules), for benchmarks.
func (r *Report) ScanStats() map[string]linuxkern.ScanStats { return r.scanned }

// ErrNoMemory is returned by Watch cycles when the guest's RAM file cannot
// be opened (the VM is not running).
var ErrNoMemory = errors.New("guest memory not available")
