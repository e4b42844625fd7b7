package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"secaas/internal/disk"
	"secaas/internal/lab"
	"secaas/internal/qmp"
)

// guestDir is where a named lab guest keeps its sockets and files.
func guestDir(name string) string { return filepath.Join(".cache", "lab", name) }

func guestFlags(name string, env *Env) (*flag.FlagSet, *string) {
	fs := newFlags(name, env)
	return fs, fs.String("name", "secaas-guest", "guest name (RAM file /dev/shm/NAME)")
}

func labGuestUp(ctx context.Context, env *Env, args []string) error {
	fs, name := guestFlags("lab guest up", env)
	mem := fs.Int("mem", 512, "RAM in MiB")
	flavour := fs.String("flavour", "amd64", "Debian kernel flavour: amd64 or cloud-amd64")
	cpu := fs.String("cpu", "", "QEMU CPU model under TCG (max: 5-level paging)")
	accel := fs.String("accel", lab.AccelMode(), "accelerator: auto (KVM only if a probe guest boots under it, else TCG), kvm or tcg; default $SECAAS_ACCEL")
	rootkit := fs.Bool("rootkit", false, "put the test rootkits in the guest: /secaas_dkom.ko (insmod /secaas_dkom.ko pid=N hides N), /secaas_hook.ko (syscall, inline and ftrace hooks) and /secaas_tamper.ko")
	dataDisk := fs.String("data-disk", "", "attach this image (raw or qcow2) as /dev/vda, block node disk0, with virtio and ext4 drivers loaded")
	nbdDisk := fs.String("nbd-disk", "", "attach the NBD export \"disk\" on this unix socket as /dev/vda (HyperAV front mode)")
	vhostDisk := fs.String("vhost-disk", "", "attach the vhost-user-blk back-end on this unix socket as /dev/vda (HyperAV front mode, transport vhost-user)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ks, err := lab.FindKernels(".")
	if err != nil {
		return err
	}
	var k *lab.GuestKernel
	for i := range ks {
		if strings.HasSuffix(ks[i].Version, "-"+*flavour) && (*flavour != "amd64" || !strings.Contains(ks[i].Version, "cloud")) {
			k = &ks[i]
		}
	}
	if k == nil {
		return fmt.Errorf("no cached %s kernel (scripts/guest-kernel.sh)", *flavour)
	}
	cfg := lab.GuestConfig{Name: *name, Kernel: k.Vmlinuz, MemMiB: *mem, Dir: guestDir(*name), CPU: *cpu, Accel: *accel, Detach: true}
	if *rootkit {
		if k.Rootkit == "" {
			return errors.New("the test rootkit is not built (scripts/guest-kernel.sh)")
		}
		cfg.Files = map[string]string{"/secaas_dkom.ko": k.Rootkit}
		if k.Hook != "" {
			cfg.Files["/secaas_hook.ko"] = k.Hook
		}
		if k.Tamper != "" {
			cfg.Files["/secaas_tamper.ko"] = k.Tamper
		}
	}
	switch {
	case (*dataDisk != "") && (*nbdDisk != "" || *vhostDisk != "") || *nbdDisk != "" && *vhostDisk != "":
		return errors.New("give one of --data-disk, --nbd-disk, --vhost-disk")
	case *dataDisk != "":
		abs, err := filepath.Abs(*dataDisk)
		if err != nil {
			return err
		}
		img, err := disk.Open(abs)
		if err != nil {
			return err
		}
		format := img.Format()
		img.Close()
		cfg.Disks = []lab.GuestDisk{{Node: "disk0", File: abs, Format: format}}
	case *nbdDisk != "":
		abs, err := filepath.Abs(*nbdDisk)
		if err != nil {
			return err
		}
		cfg.Disks = []lab.GuestDisk{{Node: "disk0", NBD: abs, Export: "disk"}}
	case *vhostDisk != "":
		abs, err := filepath.Abs(*vhostDisk)
		if err != nil {
			return err
		}
		cfg.Disks = []lab.GuestDisk{{Node: "disk0", VhostUser: abs}}
	}
	if len(cfg.Disks) > 0 {
		cfg.Modules = []string{"virtio_pci", "virtio_blk", "virtio_console", "crc32c_generic", "ext4"}
	}
	lab.StopGuest(cfg.Dir, *name) // a previous run's guest, if any
	t0 := time.Now()
	g, err := lab.StartGuest(ctx, cfg)
	if err != nil {
		return err
	}
	g.Detach()
	fmt.Fprintf(env.Stdout, "guest %s up in %s: kernel %s, %d MiB, RAM %s, QMP %s, accelerator %s\n", *name, time.Since(t0).Round(100*time.Millisecond), k.Version, *mem, g.RAMFile, g.QMP, g.Accel)
	return nil
}

func labGuestRun(ctx context.Context, env *Env, args []string) error {
	fs, name := guestFlags("lab guest run", env)
	timeout := fs.Duration("timeout", time.Minute, "how long the command may take")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return errors.New("give the command to run in the guest")
	}
	g, err := lab.AttachGuest(guestDir(*name), *name)
	if err != nil {
		return err
	}
	defer g.Detach()
	fmt.Fprintf(env.Stderr, "guest %s (accelerator %s)\n", *name, g.Accel.Accel)
	out, err := g.Run(strings.Join(pos, " "), *timeout)
	if out != "" {
		fmt.Fprintln(env.Stdout, out)
	}
	return err
}

func labGuestDump(ctx context.Context, env *Env, args []string) error {
	fs, name := guestFlags("lab guest dump", env)
	out := fs.String("out", "", "ELF core to write (absolute or relative path)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	path, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := qmp.Dial(ctx, filepath.Join(guestDir(*name), "qmp.sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	t0 := time.Now()
	if err := c.Execute(ctx, "dump-guest-memory", map[string]any{"paging": false, "protocol": "file:" + path}, nil); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "dumped guest %s (accelerator %s) to %s in %s (QMP dump-guest-memory, ELF core)\n", *name, guestAccel(*name), path, time.Since(t0).Round(time.Millisecond))
	return nil
}

func labGuestDown(ctx context.Context, env *Env, args []string) error {
	fs, name := guestFlags("lab guest down", env)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	accel := guestAccel(*name)
	if err := lab.StopGuest(guestDir(*name), *name); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "guest %s (accelerator %s) stopped\n", *name, accel)
	return nil
}

// guestAccel is the accelerator a detached guest runs on, from its files.
func guestAccel(name string) string {
	var a lab.AccelChoice
	if b, err := os.ReadFile(filepath.Join(guestDir(name), "accel.json")); err != nil || json.Unmarshal(b, &a) != nil {
		return "unknown"
	}
	return string(a.Accel)
}
