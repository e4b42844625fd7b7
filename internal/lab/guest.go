package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// GuestConfig describes a test guest: Debian's own kernel, a busybox
// initramfs, RAM in a shared file the host can map.
type GuestConfig struct {
	Name   string // used for sockets and the RAM file (default "secaas-guest")
	Kernel string // vmlinuz (default: from .cache/guest, see scripts/guest-kernel.sh)
	MemMiB int    // default 512
	Dir    string // working directory for sockets and the initramfs
	Append string // extra kernel command line
	CPU    string // QEMU -cpu model under TCG (default QEMU's; "max" adds 5-level paging); KVM runs -cpu host
	// Accel is the accelerator setting: auto, kvm or tcg ("" = $SECAAS_ACCEL,
	// else auto); see ChooseAccel. The guest's Accel says what ran.
	Accel string
	// Log gets one line when auto falls back to TCG on a host with
	// /dev/kvm (default slog.Default()).
	Log *slog.Logger
	// Files are copied into the initramfs: guest path -> host path.
	Files map[string]string
	// Modules are kernel modules (by name, e.g. "virtio_blk", "ext4")
	// loaded at boot with their dependencies, from the kernel package.
	Modules []string
	// Disks are attached as virtio-blk devices (vda, vdb, ...).
	Disks []GuestDisk
	// IOThread runs the disks' I/O in a QEMU I/O thread of their own
	// (-object iothread), off the main loop.
	IOThread bool
	// Ports are virtio-serial ports (by name, e.g. "secaas.0"); the host
	// side of each is a unix socket QEMU listens on: PortSocket(name).
	Ports []string
	// Tap attaches a virtio network card (eth0 in the guest, with the
	// virtio_net module loaded) to a host tap device of this name, which
	// QEMU creates (root); the host side is left down and unaddressed.
	Tap string
	// Detach leaves QEMU running when this process exits (its own session,
	// its log in Dir/qemu.log, its pid in Dir/qemu.pid): AttachGuest
	// reconnects to it, StopGuest ends it.
	Detach bool
}

// Guest is a running QEMU guest.
type Guest struct {
	cfg     GuestConfig
	cmd     *exec.Cmd
	Accel   AccelChoice // the accelerator the guest runs on, and why
	RAMFile string      // guest physical memory, shared (memory-backend-file)
	QMP     string      // QMP unix socket
	GDB     string      // gdbstub unix socket
	Serial  string      // serial console unix socket
	con     net.Conn
	rd      *bufio.Reader
	mu      sync.Mutex // serialises console commands
	seq     int
	exited  chan error
}

// GuestDisk is a virtio disk of a guest, with a block node name for QMP:
// an image file (Format raw or qcow2), an NBD export (NBD: a unix socket)
// served by secaas in front of the image, or a vhost-user-blk backend
// (VhostUser: its unix socket; the backend reads the guest's queues and
// buffers in the guest's shared RAM, QEMU only relays notifications).
type GuestDisk struct {
	Node      string
	File      string
	Format    string // raw or qcow2 (File)
	NBD       string // unix socket (instead of File)
	Export    string
	VhostUser string // unix socket of a vhost-user-blk backend (instead of File)
	Direct    bool   // File: bypass the host's page cache (cache.direct=on, O_DIRECT)
}

func (d GuestDisk) args() []string {
	if d.VhostUser != "" {
		return []string{"-chardev", fmt.Sprintf("socket,id=%s-vu,path=%s", d.Node, d.VhostUser),
			"-device", fmt.Sprintf("vhost-user-blk-pci,chardev=%s-vu,num-queues=1,id=%s", d.Node, d.DeviceID())}
	}
	if d.NBD != "" {
		return []string{"-blockdev", fmt.Sprintf("driver=nbd,server.type=unix,server.path=%s,export=%s,node-name=%s", d.NBD, d.Export, d.Node),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,serial=%s,id=%s", d.Node, d.Node, d.DeviceID())}
	}
	format := d.Format
	if format == "" {
		format = "raw"
	}
	return []string{"-blockdev", fmt.Sprintf("driver=file,filename=%s,node-name=%s-file,cache.direct=%s", d.File, d.Node, map[bool]string{false: "off", true: "on"}[d.Direct]),
		"-blockdev", fmt.Sprintf("driver=%s,file=%s-file,node-name=%s", format, d.Node, d.Node),
		"-device", fmt.Sprintf("virtio-blk-pci,drive=%s,serial=%s,id=%s", d.Node, d.Node, d.DeviceID())}
}

// DeviceID is the disk's qdev id ("NODE-dev").
func (d GuestDisk) DeviceID() string { return d.Node + "-dev" }

// moduleFiles resolves module names to their .ko files under the kernel
// package (next to vmlinuz, in root/lib/modules/VERSION), dependencies
// first, from modules.dep.
func moduleFiles(vmlinuz string, names []string) ([]string, error) {
	deps, _ := filepath.Glob(filepath.Join(filepath.Dir(vmlinuz), "root", "lib", "modules", "*", "modules.dep"))
	if len(deps) == 0 {
		return nil, fmt.Errorf("no modules.dep for %s", vmlinuz)
	}
	b, err := os.ReadFile(deps[0])
	if err != nil {
		return nil, err
	}
	base := filepath.Dir(deps[0])
	byName := map[string][]string{} // module name -> [file, deps...]
	for _, line := range strings.Split(string(b), "\n") {
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
		byName[name] = append([]string{file}, strings.Fields(rest)...)
	}
	var out []string
	seen := map[string]bool{}
	var visit func(file string) error
	visit = func(file string) error {
		if seen[file] {
			return nil
		}
		seen[file] = true
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(file), ".ko"), "-", "_")
		for _, d := range byName[name][1:] {
			if err := visit(d); err != nil {
				return err
			}
		}
		out = append(out, filepath.Join(base, file))
		return nil
	}
	for _, n := range names {
		e, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("kernel module %q not found (built in?)", n)
		}
		if err := visit(e[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// GuestKernel is one cached Debian kernel flavour (scripts/guest-kernel.sh).
type GuestKernel struct {
	Version string // uname -r, e.g. 6.1.0-56-cloud-amd64
	Vmlinuz string
	Rootkit string // the test rootkit built for it (secaas_dkom.ko), "" if absent
	Tamper  string // the test module that re-patches a hooked dispatch (secaas_tamper.ko), "" if absent
	Hook    string // the test rootkit that hooks syscalls and /proc/net/tcp (secaas_hook.ko), "" if absent
}

// FindKernels returns every cached kernel flavour, generic first.
func FindKernels(repoRoot string) ([]GuestKernel, error) {
	ms, _ := filepath.Glob(filepath.Join(repoRoot, ".cache", "guest", "*", "vmlinuz"))
	if len(ms) == 0 {
		return nil, errors.New("guest kernel not found: run scripts/guest-kernel.sh (make deps does)")
	}
	var out []GuestKernel
	for _, m := range ms {
		out = append(out, KernelAt(m))
	}
	// "6.1.0-56-amd64" sorts before "6.1.0-56-cloud-amd64": generic first.
	return out, nil
}

// KernelAt describes the kernel vmlinuz laid out as scripts/guest-kernel.sh
// does (its test modules in rootkit/ beside it, where built); its version
// is its directory's name.
func KernelAt(vmlinuz string) GuestKernel {
	dir := filepath.Dir(vmlinuz)
	k := GuestKernel{Version: filepath.Base(dir), Vmlinuz: vmlinuz}
	if rk := filepath.Join(dir, "rootkit", "secaas_dkom.ko"); fileExists(rk) {
		k.Rootkit = rk
	}
	if tm := filepath.Join(dir, "rootkit", "secaas_tamper.ko"); fileExists(tm) {
		k.Tamper = tm
	}
	if h := filepath.Join(dir, "rootkit", "secaas_hook.ko"); fileExists(h) {
		k.Hook = h
	}
	return k
}

// FindKernel returns the generic cached Debian kernel.
func FindKernel(repoRoot string) (string, error) {
	ks, err := FindKernels(repoRoot)
	if err != nil {
		return "", err
	}
	return ks[0].Vmlinuz, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
[ -f /etc/modules.order ] && for m in $(cat /etc/modules.order); do insmod /lib/modules/$m; done
echo SECAAS-GUEST-READY
# The console shell neither echoes nor prompts: Run reads only output.
exec setsid sh -c 'stty -echo </dev/ttyS0; PS1= PS2= exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
`

// buildInitramfs writes a gzip'd newc cpio with busybox and the init.
func buildInitramfs(ctx context.Context, dir, init string, files map[string]string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		bb = "/bin/busybox"
	}
	root := filepath.Join(dir, "initramfs")
	os.RemoveAll(root)
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		return "", fmt.Errorf("busybox-static: %w", err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		return "", err
	}
	for guestPath, hostPath := range files {
		b, err := os.ReadFile(hostPath)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		st, err := os.Stat(hostPath)
		if err != nil {
			return "", err
		}
		dst := filepath.Join(root, filepath.Clean("/"+guestPath))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, b, st.Mode().Perm()|0o400); err != nil {
			return "", err
		}
	}
	out := filepath.Join(dir, "initrd.gz")
	sh := fmt.Sprintf("cd %q && find . | cpio -o -H newc --quiet | gzip -1 > %q", root, out)
	if o, err := exec.CommandContext(ctx, "sh", "-c", sh).CombinedOutput(); err != nil {
		return "", fmt.Errorf("initramfs: %v: %s", err, o)
	}
	return out, nil
}

// StartGuest boots the guest under QEMU (TCG here, KVM where /dev/kvm
// exists) and waits for its console.
func StartGuest(ctx context.Context, cfg GuestConfig) (*Guest, error) {
	if cfg.Name == "" {
		cfg.Name = "secaas-guest"
	}
	if cfg.MemMiB == 0 {
		cfg.MemMiB = 512
	}
	if _, err := exec.LookPath(QEMUBinary()); err != nil {
		return nil, fmt.Errorf("%s is not installed (make deps)", QEMUBinary())
	}
	accel, err := ChooseAccel(ctx, cfg.Accel, cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	if accel.Fallback {
		logAccelOnce(cfg.Log, accel)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{}
	for k, v := range cfg.Files {
		files[k] = v
	}
	if cfg.Tap != "" {
		cfg.Modules = append(cfg.Modules, "virtio_pci", "virtio_net")
	}
	if len(cfg.Modules) > 0 {
		kos, err := moduleFiles(cfg.Kernel, cfg.Modules)
		if err != nil {
			return nil, err
		}
		var order []string
		for _, ko := range kos {
			files["/lib/modules/"+filepath.Base(ko)] = ko
			order = append(order, filepath.Base(ko))
		}
		orderFile := filepath.Join(cfg.Dir, "modules.order")
		if err := os.WriteFile(orderFile, []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		files["/etc/modules.order"] = orderFile
	}
	initrd, err := buildInitramfs(ctx, cfg.Dir, guestInit, files)
	if err != nil {
		return nil, err
	}
	g := &Guest{cfg: cfg, RAMFile: "/dev/shm/" + cfg.Name, QMP: filepath.Join(cfg.Dir, "qmp.sock"),
		GDB: filepath.Join(cfg.Dir, "gdb.sock"), Serial: filepath.Join(cfg.Dir, "serial.sock"), exited: make(chan error, 1)}
	for _, f := range []string{g.RAMFile, g.QMP, g.GDB, g.Serial} {
		os.Remove(f)
	}
	args := []string{"-m", fmt.Sprint(cfg.MemMiB), "-nographic", "-no-reboot", "-nodefaults",
		"-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=on", cfg.MemMiB, g.RAMFile),
		"-machine", "pc,memory-backend=mem",
		"-kernel", cfg.Kernel, "-initrd", initrd,
		"-append", strings.TrimSpace("console=ttyS0 quiet panic=-1 " + cfg.Append),
		"-serial", "unix:" + g.Serial + ",server=on,wait=off",
		"-qmp", "unix:" + g.QMP + ",server=on,wait=off",
		"-gdb", "unix:" + g.GDB + ",server=on,wait=off",
		"-monitor", "none"}
	if cfg.IOThread && len(cfg.Disks) > 0 {
		args = append(args, "-object", "iothread,id=io0")
	}
	for _, d := range cfg.Disks {
		da := d.args()
		if cfg.IOThread {
			da[len(da)-1] += ",iothread=io0"
		}
		args = append(args, da...)
	}
	if len(cfg.Ports) > 0 {
		args = append(args, "-device", "virtio-serial-pci,id=vser0")
		for i, name := range cfg.Ports {
			args = append(args, "-chardev", fmt.Sprintf("socket,id=port%d,path=%s,server=on,wait=off", i, filepath.Join(cfg.Dir, "port-"+name+".sock")),
				"-device", fmt.Sprintf("virtserialport,bus=vser0.0,chardev=port%d,name=%s", i, name))
		}
	}
	if cfg.Tap != "" {
		args = append(args, "-netdev", fmt.Sprintf("tap,id=net0,ifname=%s,script=no,downscript=no", cfg.Tap),
			"-device", "virtio-net-pci,netdev=net0,mac=52:54:00:5e:ca:a5")
	}
	if accel.Accel == AccelKVM {
		args = append(args, "-enable-kvm", "-cpu", "host")
	} else if cfg.CPU != "" {
		args = append(args, "-cpu", cfg.CPU)
	}
	g.Accel = accel
	g.cmd = exec.Command(QEMUBinary(), args...)
	var stderr bytes.Buffer
	g.cmd.Stderr = &stderr
	if cfg.Detach {
		logf, err := os.Create(filepath.Join(cfg.Dir, "qemu.log"))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		g.cmd.Stderr = logf
		g.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	if cfg.Detach {
		if err := os.WriteFile(filepath.Join(cfg.Dir, "qemu.pid"), []byte(fmt.Sprint(g.cmd.Process.Pid)), 0o644); err != nil {
			g.cmd.Process.Kill()
			return nil, err
		}
		if b, err := json.Marshal(accel); err == nil {
			os.WriteFile(filepath.Join(cfg.Dir, "accel.json"), b, 0o644)
		}
	}
	go func() { g.exited <- g.cmd.Wait() }()
	// The serial socket appears once QEMU is up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", g.Serial)
		if err == nil {
			g.con, g.rd = c, bufio.NewReader(c)
			break
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("guest: no serial console: %v: %s", err, stderr.String())
		}
		select {
		case err := <-g.exited:
			return nil, fmt.Errorf("guest: qemu exited: %v: %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := g.readUntil("SECAAS-GUEST-READY", 90*time.Second); err != nil {
		g.Stop()
		return nil, fmt.Errorf("guest: no boot: %w", err)
	}
	// The shell on ttyS0: make sure it answers.
	if _, err := g.Run("true", 30*time.Second); err != nil {
		g.Stop()
		return nil, fmt.Errorf("guest: shell does not answer: %w", err)
	}
	return g, nil
}

func (g *Guest) readUntil(marker string, timeout time.Duration) (string, error) {
	g.con.SetReadDeadline(time.Now().Add(timeout))
	var b strings.Builder
	for {
		line, err := g.rd.ReadString('\n')
		b.WriteString(line)
		if strings.Contains(line, marker) {
			return b.String(), nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return b.String(), fmt.Errorf("console closed waiting for %q", marker)
			}
			return b.String(), fmt.Errorf("waiting for %q: %w", marker, err)
		}
	}
}

// Run runs a shell command in the guest and returns its output (stdout and
// stderr), without the exit status: the caller checks what it needs.
func (g *Guest) Run(cmd string, timeout time.Duration) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	// The markers are printed by the guest's echo: the empty quotes keep
	// them out of anything the console might echo back of what we typed.
	begin := fmt.Sprintf("__SECAAS_BEGIN_%d__", g.seq)
	end := fmt.Sprintf("__SECAAS_END_%d__", g.seq)
	// Separate lines, so that a command ending in "&" stays valid shell.
	line := fmt.Sprintf("echo __SECAAS_BEGIN_\"\"%d__\n%s\necho __SECAAS_END_\"\"%d__\n", g.seq, cmd, g.seq)
	if _, err := io.WriteString(g.con, line); err != nil {
		return "", err
	}
	out, err := g.readUntil(end, timeout)
	if err != nil {
		return out, err
	}
	out = strings.ReplaceAll(out, "\r", "")
	if i := strings.Index(out, begin+"\n"); i >= 0 {
		out = out[i+len(begin)+1:]
	}
	out = out[:strings.LastIndex(out, end)]
	return strings.TrimSpace(out), nil
}

// PortSocket is the host side of a virtio-serial port.
func (g *Guest) PortSocket(name string) string {
	return filepath.Join(g.cfg.Dir, "port-"+name+".sock")
}

// GuestTool builds the static secaas-guest binary (cmd/secaas-guest) into
// dir and returns its path.
func GuestTool(repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "secaas-guest")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go" // where this machine kind has it (scripts/deps.sh)
	}
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/secaas-guest")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build secaas-guest: %v: %s", err, b)
	}
	return out, nil
}

// AttachGuest reconnects to a guest started with Detach in dir: its
// console (one client at a time), RAM file and sockets. Close the console
// with Detach; StopGuest ends the guest.
func AttachGuest(dir, name string) (*Guest, error) {
	g := &Guest{cfg: GuestConfig{Name: name, Dir: dir}, RAMFile: "/dev/shm/" + name, QMP: filepath.Join(dir, "qmp.sock"),
		GDB: filepath.Join(dir, "gdb.sock"), Serial: filepath.Join(dir, "serial.sock")}
	c, err := net.Dial("unix", g.Serial)
	if err != nil {
		return nil, fmt.Errorf("guest %s: no console (is it running? secaas lab guest up): %w", name, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "accel.json")); err == nil {
		json.Unmarshal(b, &g.Accel)
	}
	g.con, g.rd = c, bufio.NewReader(c)
	return g, nil
}

// Detach closes the console connection and leaves the guest running.
func (g *Guest) Detach() {
	if g.con != nil {
		g.con.Close()
	}
}

// StopGuest ends a guest started with Detach in dir and removes its files.
func StopGuest(dir, name string) error {
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		return fmt.Errorf("guest %s: %w", name, err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 1 {
		return fmt.Errorf("guest %s: bad pid file %q", name, b)
	}
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Contains(cmdline, []byte("qemu")) {
		pid = 0 // gone (and the pid perhaps reused): only clean up
	}
	if p, err := os.FindProcess(pid); err == nil && pid > 0 {
		p.Signal(syscall.SIGTERM)
		for i := 0; i < 50 && p.Signal(syscall.Signal(0)) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		p.Signal(syscall.SIGKILL)
	}
	for _, f := range []string{"/dev/shm/" + name, filepath.Join(dir, "qmp.sock"), filepath.Join(dir, "gdb.sock"), filepath.Join(dir, "serial.sock"), filepath.Join(dir, "qemu.pid"), filepath.Join(dir, "accel.json")} {
		os.Remove(f)
	}
	return nil
}

// Stop powers the guest off and removes its RAM file and sockets.
func (g *Guest) Stop() {
	if g.con != nil {
		g.con.Close()
	}
	if g.cmd != nil && g.cmd.Process != nil {
		g.cmd.Process.Kill()
		select {
		case <-g.exited:
		case <-time.After(5 * time.Second):
		}
	}
	for _, f := range []string{g.RAMFile, g.QMP, g.GDB, g.Serial} {
		os.Remove(f)
	}
}

var accelLogged sync.Once

// logAccelOnce says once per process why a host with /dev/kvm runs its
// guests under TCG.
func logAccelOnce(log *slog.Logger, c AccelChoice) {
	accelLogged.Do(func() {
		if log == nil {
			log = slog.Default()
		}
		log.Warn("guests run under TCG", "reason", c.Reason)
	})
}
