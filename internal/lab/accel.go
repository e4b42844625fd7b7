package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"secaas/internal/hostpath"
)

// Accel is how QEMU runs a guest's CPUs.
type Accel string

// Accelerators.
const (
	AccelKVM Accel = "kvm" // hardware virtualisation, -enable-kvm -cpu host
	AccelTCG Accel = "tcg" // QEMU's software emulation
)

// AccelChoice is the accelerator chosen for the lab's guests and why.
type AccelChoice struct {
	Accel  Accel  `json:"accel"`
	Reason string `json:"reason"`
	// Fallback: the host has a KVM device that failed the probe.
	Fallback bool `json:"fallback,omitempty"`
}

func (c AccelChoice) String() string { return fmt.Sprintf("%s (%s)", c.Accel, c.Reason) }

// ErrAccel: the accelerator asked for cannot run a guest here.
var ErrAccel = errors.New("accelerator")

// accelEnv names the setting: auto (default), kvm or tcg.
const accelEnv = "SECAAS_ACCEL"

// qemuEnv names another QEMU binary (a wrapper, a build of one's own).
const qemuEnv = "SECAAS_QEMU"

// QEMUBinary is the qemu-system-x86_64 the lab runs ($SECAAS_QEMU or the
// one on PATH).
func QEMUBinary() string {
	if b := os.Getenv(qemuEnv); b != "" {
		return b
	}
	return "qemu-system-x86_64"
}

// AccelMode is the accelerator setting in force: $SECAAS_ACCEL, else auto.
func AccelMode() string {
	if m := os.Getenv(accelEnv); m != "" {
		return m
	}
	return "auto"
}

// accelProber proves or disproves that KVM runs a guest; a seam for tests.
type accelProber struct {
	devKVM  string        // the device node; its absence settles the question
	qemu    string        // binary to probe
	kernel  string        // guest kernel to boot
	timeout time.Duration // for the probe boot
	cache   string        // file that keeps the answer for this boot of the host ("" = none)
}

var (
	accelMu   sync.Mutex                 // guards accelMemo
	accelMemo = map[string]AccelChoice{} // probe results of this process, by qemu binary
)

// ChooseAccel picks the accelerator for mode ("" means AccelMode()):
// "tcg" always gives TCG; "kvm" gives KVM only if a probe boot of kernel
// under KVM reaches its init, else an ErrAccel error; "auto" gives KVM
// where that probe passes and TCG otherwise, saying why. The device node
// alone never chooses KVM: some hosts have a /dev/kvm that opens but
// cannot run a guest (QEMU aborts setting an MSR, or the kernel hangs at
// boot under nested virtualisation). A probe's answer is kept for the
// rest of the host's boot (per QEMU binary), so only the first guest pays.
func ChooseAccel(ctx context.Context, mode, kernel string) (AccelChoice, error) {
	cache := ""
	if dir := os.TempDir(); dir != "" {
		cache = filepath.Join(dir, fmt.Sprintf("secaas-accel-%d.json", os.Getuid()))
	}
	p := accelProber{devKVM: "/dev/kvm", qemu: QEMUBinary(), kernel: kernel, timeout: 20 * time.Second, cache: cache}
	return p.choose(ctx, mode)
}

func (p accelProber) choose(ctx context.Context, mode string) (AccelChoice, error) {
	if mode == "" {
		mode = AccelMode()
	}
	switch mode {
	case "tcg":
		return AccelChoice{Accel: AccelTCG, Reason: accelEnv + "=tcg"}, nil
	case "kvm", "auto":
	default:
		return AccelChoice{}, fmt.Errorf("%w: %s=%q is none of auto, kvm, tcg", ErrAccel, accelEnv, mode)
	}
	c := p.probe(ctx)
	if mode == "kvm" {
		if c.Accel != AccelKVM {
			return c, fmt.Errorf("%w: %s=kvm, but %s", ErrAccel, accelEnv, c.Reason)
		}
		return AccelChoice{Accel: AccelKVM, Reason: accelEnv + "=kvm, " + c.Reason}, nil
	}
	return c, nil
}

// probe answers from memory, from the boot's cache file, or by booting.
func (p accelProber) probe(ctx context.Context) AccelChoice {
	if _, err := os.Stat(p.devKVM); err != nil {
		return AccelChoice{Accel: AccelTCG, Reason: "no " + p.devKVM}
	}
	key := p.qemu + "\x00" + binaryStamp(p.qemu)
	accelMu.Lock()
	defer accelMu.Unlock()
	if c, ok := accelMemo[key]; ok {
		return c
	}
	c, ok := p.readCache(key)
	if !ok {
		c = p.boot(ctx)
		if ctx.Err() != nil {
			return c // cancelled: no answer to keep
		}
		p.writeCache(key, c)
	}
	accelMemo[key] = c
	return c
}

// binaryStamp identifies a binary's version on disk (path, size, mtime).
func binaryStamp(name string) string {
	path, err := exec.LookPath(name)
	if err != nil {
		return "missing"
	}
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%s:%d:%d", path, st.Size(), st.ModTime().UnixNano())
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

type accelCache struct {
	Boot    string                 `json:"boot"`
	Answers map[string]AccelChoice `json:"answers"`
}

// readCache returns a probe answer kept for this boot of the host. The
// file counts only if this user owns it and nobody else may write it.
func (p accelProber) readCache(key string) (AccelChoice, bool) {
	if p.cache == "" {
		return AccelChoice{}, false
	}
	c, ok := p.loadCache()
	if !ok {
		return AccelChoice{}, false
	}
	a, ok := c.Answers[key]
	return a, ok
}

func (p accelProber) loadCache() (accelCache, bool) {
	f, err := os.Open(p.cache)
	if err != nil {
		return accelCache{}, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Mode().Perm()&0o022 != 0 {
		return accelCache{}, false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Getuid() {
		return accelCache{}, false
	}
	var c accelCache
	if json.NewDecoder(f).Decode(&c) != nil || c.Boot == "" || c.Boot != bootID() {
		return accelCache{}, false
	}
	return c, true
}

func (p accelProber) writeCache(key string, a AccelChoice) {
	if p.cache == "" || bootID() == "" {
		return
	}
	c, ok := p.loadCache()
	if !ok {
		c = accelCache{Boot: bootID(), Answers: map[string]AccelChoice{}}
	}
	c.Answers[key] = a
	b, err := json.Marshal(c)
	if err != nil {
		return
	}
	hostpath.WriteFileAtomic(p.cache, b) // a cache: a failed write costs a probe later
}

// probeMarker is what the probe guest's init prints once user space runs.
const probeMarker = "SECAAS-ACCEL-PROBE-OK"

const probeInit = `#!/bin/busybox sh
/bin/busybox echo ` + probeMarker + `
/bin/busybox poweroff -f
`

// boot starts the guest kernel under KVM with an initramfs whose init
// prints a marker: KVM counts as working only if that marker arrives,
// which proves the CPU model, the kernel's boot and user space all run.
func (p accelProber) boot(ctx context.Context) AccelChoice {
	tcg := func(why string) AccelChoice {
		return AccelChoice{AccelTCG, p.devKVM + " exists but cannot run a guest: " + why, true}
	}
	if p.kernel == "" {
		return tcg("no guest kernel to probe with")
	}
	dir, err := os.MkdirTemp("", "secaas-accel-probe-")
	if err != nil {
		return tcg(err.Error())
	}
	defer os.RemoveAll(dir)
	initrd, err := buildInitramfs(ctx, dir, probeInit, nil)
	if err != nil {
		return tcg(err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, p.qemu, "-enable-kvm", "-cpu", "host", "-m", "128", "-nographic", "-no-reboot",
		"-nodefaults", "-kernel", p.kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1",
		"-serial", "stdio", "-monitor", "none")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return tcg(err.Error())
	}
	if err := cmd.Start(); err != nil {
		return tcg(err.Error())
	}
	found := false
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), probeMarker) {
			found = true
			break
		}
	}
	cancel() // the guest has answered (or QEMU is gone): end it
	werr := cmd.Wait()
	if found {
		return AccelChoice{Accel: AccelKVM, Reason: fmt.Sprintf("a probe guest booted under KVM in %s", time.Since(t0).Round(10*time.Millisecond))}
	}
	if ctx.Err() == context.DeadlineExceeded {
		return tcg(fmt.Sprintf("a probe guest under KVM did not reach its init in %s", p.timeout))
	}
	msg := strings.TrimSpace(stderr.String())
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if msg == "" && werr != nil {
		msg = werr.Error()
	}
	if msg == "" {
		msg = "QEMU exited before the guest's init ran"
	}
	return tcg("QEMU under KVM: " + msg)
}
