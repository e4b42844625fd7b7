package ovs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Instance is a private Open vSwitch: its own ovsdb-server and
// ovs-vswitchd, with database, sockets and logs in one directory, beside
// (not instead of) the host's. Its ovs-vswitchd may run under a wrapper,
// e.g. valgrind, to measure the switch itself.
type Instance struct {
	Dir      string
	vswitchd *exec.Cmd
}

// StartPrivate starts a private instance in dir (which must exist), with
// wrapper (may be empty) in front of ovs-vswitchd and args after its own,
// and waits until it answers.
func StartPrivate(ctx context.Context, dir string, wrapper []string, args ...string) (*Instance, error) {
	in := &Instance{Dir: dir}
	db := filepath.Join(dir, "conf.db")
	if out, err := exec.CommandContext(ctx, "ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("private ovs: ovsdb-tool create: %v: %s", err, out)
	}
	sock := "unix:" + filepath.Join(dir, "db.sock")
	if out, err := exec.CommandContext(ctx, "ovsdb-server", db, "--remote=p"+sock,
		"--pidfile="+filepath.Join(dir, "ovsdb-server.pid"), "--unixctl="+filepath.Join(dir, "ovsdb-server.ctl"),
		"--log-file="+filepath.Join(dir, "ovsdb-server.log"), "--detach").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("private ovs: ovsdb-server: %v: %s", err, out)
	}
	if _, err := in.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--no-wait", "init"); err != nil {
		in.Stop()
		return nil, fmt.Errorf("private ovs: %w", err)
	}
	args = append(append(append([]string{}, wrapper...), "ovs-vswitchd", sock,
		"--pidfile="+filepath.Join(dir, "ovs-vswitchd.pid"), "--unixctl="+filepath.Join(dir, "ovs-vswitchd.ctl"),
		"--log-file="+filepath.Join(dir, "ovs-vswitchd.log")), args...)
	log, err := os.Create(filepath.Join(dir, "ovs-vswitchd.out"))
	if err != nil {
		in.Stop()
		return nil, err
	}
	defer log.Close()
	in.vswitchd = exec.Command(args[0], args[1:]...)
	in.vswitchd.Dir, in.vswitchd.Env = dir, in.env()
	in.vswitchd.Stdout, in.vswitchd.Stderr = log, log
	if err := in.vswitchd.Start(); err != nil {
		in.Stop()
		return nil, fmt.Errorf("private ovs: %s: %w", args[0], err)
	}
	// Under valgrind the switch takes seconds to come up.
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := in.run(ctx, nil, "ovs-appctl", "--timeout=5", "-t", filepath.Join(dir, "ovs-vswitchd.ctl"), "version"); err == nil {
			return in, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			in.Stop()
			return nil, fmt.Errorf("private ovs: ovs-vswitchd did not answer in 60 s (log: %s)", log.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// env is the environment of the instance's commands: the OVS tools find
// the database and the bridges' sockets under OVS_RUNDIR.
func (in *Instance) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+in.Dir, "OVS_DBDIR="+in.Dir, "OVS_LOGDIR="+in.Dir)
}

func (in *Instance) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return runEnv(ctx, in.env(), stdin, name, args...)
}

// Bridge returns a handle on bridge name of this instance.
func (in *Instance) Bridge(name string) *Bridge {
	return &Bridge{Name: name, run: in.run, env: in.env()}
}

// Sibling returns a handle on another bridge of the same Open vSwitch.
func (b *Bridge) Sibling(name string) *Bridge { return &Bridge{Name: name, run: b.run, env: b.env} }

// Vsctl runs ovs-vsctl against the instance's database.
func (in *Instance) Vsctl(ctx context.Context, args ...string) ([]byte, error) {
	return in.run(ctx, nil, "ovs-vsctl", args...)
}

// Appctl runs ovs-appctl against the instance's ovs-vswitchd.
func (in *Instance) Appctl(ctx context.Context, args ...string) ([]byte, error) {
	return in.run(ctx, nil, "ovs-appctl", append([]string{"-t", filepath.Join(in.Dir, "ovs-vswitchd.ctl")}, args...)...)
}

// PID is the process id of the instance's ovs-vswitchd (its wrapper's,
// which is the same process for valgrind).
func (in *Instance) PID() int {
	if in.vswitchd == nil || in.vswitchd.Process == nil {
		return 0
	}
	return in.vswitchd.Process.Pid
}

// Stop ends both daemons and waits for ovs-vswitchd.
func (in *Instance) Stop() {
	if in.vswitchd != nil && in.vswitchd.Process != nil {
		in.vswitchd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { in.vswitchd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			in.vswitchd.Process.Kill()
			<-done
		}
	}
	if b, err := os.ReadFile(filepath.Join(in.Dir, "ovsdb-server.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			if p, err := os.FindProcess(pid); err == nil && !errors.Is(p.Signal(syscall.SIGTERM), os.ErrProcessDone) {
				for i := 0; i < 50 && p.Signal(syscall.Signal(0)) == nil; i++ {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}
	}
}
