package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Env is what a command may touch.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Stdin          io.Reader // "-f -" reads the policy from it (nil: none)

	declare **flag.FlagSet // a declaration pass: newFlags hands its flag set over here
	args    []string       // the command line Main was given
}

// command is one verb: its words ("acl check"), positional arguments,
// one-line description, examples, the flags it cannot do without, and the
// function that runs it. The function declares its flags on a flag set
// from newFlags and parses them with parse; the cobra tree learns them by
// a declaration pass (declare), so that help, completion and validation
// see every flag, and a malformed or missing one stops the command before
// it does anything.
type command struct {
	name     string
	args     string // positional arguments, for the usage line
	short    string
	example  string
	required []string
	run      func(ctx context.Context, env *Env, args []string) error
}

func commands() []command {
	return []command{
		{"acl compile", "", "print the OpenFlow flow set of a policy file",
			"secaas acl compile -f examples/table2.yaml\nsecaas acl compile -f - --ports vm1=1,vm2=2,vm3=3 < policy.yaml", []string{"f"}, aclCompile},
		{"acl check", "", "the reference oracle's verdict for a packet between two VMs (exit 3 for DROP)",
			"secaas acl check -f examples/table2.yaml --from VM1 --to VM3 --proto tcp --dport 22\nsecaas acl check -f examples/table2.yaml --from VM1 --to VM3 --proto icmp -o json || echo dropped", []string{"f", "from", "to"}, aclCheck},
		{"acl trace", "", "ask the real switch (ofproto/trace) and compare with the oracle (exit 3 for DROP)",
			"secaas acl trace -f examples/table2.yaml --bridge secaas-demo --from VM1 --to VM2 --proto icmp", []string{"f", "from", "to"}, aclTrace},
		{"acl apply", "", "enforce a policy file on a bridge without the daemon",
			"secaas acl apply -f examples/table2.yaml --bridge br0\nsecaas acl apply -f empty.yaml --bridge br0 --allow-empty", []string{"f"}, aclApply},
		{"acl migrate", "", "rewrite a policy of an earlier version: VMs named like addresses, MACs or wildcards renamed, prefixes masked",
			"secaas acl migrate -f old.yaml --out new.yaml", []string{"f"}, aclMigrate},
		{"lab up", "", "one network namespace per VM of a policy, attached to a bridge under the VM's port name",
			"secaas lab up -f examples/table2.yaml --bridge br0 --prefix lab-", []string{"f"}, labUp},
		{"lab down", "", "remove a lab's namespaces, veths and ports (only its own)",
			"secaas lab down -f examples/table2.yaml --bridge br0 --prefix lab-", []string{"f"}, labDown},
		{"lab matrix", "", "reachability matrix from real pings and TCP connects, beside the oracle",
			"secaas lab matrix -f examples/table2.yaml --prefix lab- --tcp 22\nsecaas lab matrix -f examples/table2.yaml -o json", []string{"f"}, labMatrix},
		{"lab traffic", "", "benign load and nmap/hping3 attacks against a mirrored server; capture and labels",
			"secaas lab traffic --seed 7 --duration 100s --out /tmp/t", nil, labTraffic},
		{"lab guest up", "", "boot a test guest (Debian's kernel, busybox) that keeps running; RAM in /dev/shm/NAME",
			"secaas lab guest up --name g1 --rootkit\nSECAAS_ACCEL=tcg secaas lab guest up --name g2 --data-disk disk.qcow2", nil, labGuestUp},
		{"lab guest run", "CMD...", "run a shell command on a test guest's console and print its output",
			"secaas lab guest run --name g1 'ps | wc -l'", nil, labGuestRun},
		{"lab guest dump", "", "write a test guest's memory as an ELF core (QMP dump-guest-memory)",
			"secaas lab guest dump --name g1 --out /tmp/g1.elf", []string{"out"}, labGuestDump},
		{"lab guest down", "", "stop a test guest and remove its files",
			"secaas lab guest down --name g1", nil, labGuestDown},
		{"nad features", "", "the window feature table of a capture",
			"secaas nad features --pcap capture.pcap --window 60s -o csv", []string{"pcap"}, nadFeatures},
		{"nad detect", "", "run anomaly detectors over a capture; says how many windows were judged",
			"secaas nad detect --pcap capture.pcap --window 60s --history 120\nsecaas nad detect --pcap capture.pcap --window 1s --detector lstm --model lstm.model", []string{"pcap"}, nadDetect},
		{"nad eval", "", "score detectors against labelled attacks: AUC, episodes found, false alarms per hour, Table 5 grid",
			"secaas nad eval --pcap /tmp/t/capture.pcap --labels /tmp/t/labels.json --window 1s --plots /tmp/t\nsecaas nad eval --pcap c.pcap --labels l.csv --window 10s --train-first 15m --detector all --model lstm.model -o json", []string{"pcap", "labels"}, nadEval},
		{"nad train", "", "train an LSTM model (LSTM-NAD classifier, or a benign-only forecaster) on a labelled capture",
			"secaas nad train --pcap /tmp/t/capture.pcap --labels /tmp/t/labels.json --window 1s --out lstm.model\nsecaas nad train --pcap c.pcap --kind forecaster --train-until 15m --out unsup.model", []string{"out"}, nadTrain},
		{"nad detectors", "", "the registered anomaly detectors",
			"secaas nad detectors", nil, nadDetectors},
		{"vmi ps", "", "processes and hidden ones, from a guest's memory alone (or the daemon's latest report)",
			"secaas vmi ps --ram /dev/shm/g1\nsecaas vmi ps --image /tmp/g1.elf -o json\nsecaas vmi ps --tid 100 --vm VM2", nil, vmiPS},
		{"vmi modules", "", "kernel modules and hidden ones, from a guest's memory alone (or the daemon's latest report)",
			"secaas vmi modules --ram /dev/shm/g1", nil, vmiModules},
		{"vmi files", "", "open files of every process, hidden ones included (lsof from guest memory)",
			"secaas vmi files --ram /dev/shm/g1\nsecaas vmi files --image /tmp/g1.elf -o json", nil, vmiFiles},
		{"vmi sockets", "", "sockets of every process, hidden ones included: protocol, state, addresses and ports",
			"secaas vmi sockets --ram /dev/shm/g1 -o json", nil, vmiSockets},
		{"vmi maps", "", "memory maps of every process (or --pid N) with their backing files",
			"secaas vmi maps --ram /dev/shm/g1 --pid 1", nil, vmiMaps},
		{"vmi integrity", "", "kernel integrity: syscall dispatch and table, IDT, inline, ftrace and kprobe hooks, hidden modules, and sockets a hooked /proc listing can hide",
			"secaas vmi integrity --ram /dev/shm/g1\nsecaas vmi integrity --image /tmp/g1.elf -o json", nil, vmiIntegrity},
		{"vmi crossview", "", "ports a running guest answers on (from its traffic) with no socket in its memory to own them",
			"secaas vmi crossview --ram /dev/shm/g1 --iface tap0 --ip 10.0.0.5 --for 30s", nil, vmiCrossView},
		{"av scan", "", "scan files inside a disk image (raw or qcow2), or of a VM through secaasd (exit 3 if infected)",
			"secaas av scan --image disk.qcow2 --path /etc/x --state av.state\nsecaas av scan --tid 100 --vm VM2 --path /etc/x", []string{"path"}, avScan},
		{"bench acl", "", "compile, apply and enforcement timings; the paper's Table 3/4 experiment",
			"secaas bench acl --seconds 10 --rounds 3 --out docs/bench-acl.md", nil, benchACL},
		{"bench drift", "", "time to repair flow tampering and packets lost across secaasd restarts, with the real daemon",
			"secaas bench drift --trials 5 --out docs/bench-drift.md", nil, benchDrift},
		{"bench nad", "", "packets per second and allocations of decode and features; live capture",
			"secaas bench nad --out docs/bench-nad.md", nil, benchNAD},
		{"bench lstm", "", "LSTM-NAD training time (21,600 windows x 50 epochs), inference per window, model size",
			"secaas bench lstm --out docs/bench-lstm.md", nil, benchLSTM},
		{"bench kmon", "", "syscall monitoring: a guest's file I/O with the monitor out and in, and the injection time",
			"secaas bench kmon --out docs/bench-kmon.md", nil, benchKMon},
		{"bench vmi", "", "a memory monitoring cycle on 512 MiB and 2 GiB guests",
			"secaas bench vmi --out docs/bench-vmi.md", nil, benchVMI},
		{"bench av", "", "the paper's Table 8 (\"changed?\" vs MD5 vs ClamAV) and Table 7 (guest write loss)",
			"secaas bench av --out docs/bench-av.md\nsecaas bench av --table7=false", nil, benchAV},
		{"bench controlplane", "", "one controller and two agents over NATS JetStream: change-to-enforced latency, API throughput, events carried",
			"secaas bench controlplane --out docs/bench-controlplane.md\nsecaas bench controlplane --tenants 4 --vms 20 --acrs 1000 -o json", nil, benchControlPlane},
		{"kmon relocate", "", "relocate an ELF object at a guest kernel address against its symbols, offline (syscall monitoring's relocation engine)",
			"secaas kmon relocate --object mon.o --base 0xffffffffc0000000 --symbols kallsyms.txt --out /tmp/mon", []string{"object", "base", "symbols", "out"}, kmonRelocate},
		{"kmon build", "", "compile the syscall monitor agents inject into guests (gcc; make does it: bin/kmon-monitor.o)",
			"secaas kmon build --out bin/kmon-monitor.o", []string{"out"}, kmonBuild},
		{"kmon policy add", "", "add a syscall monitoring rule to a VM (its port needs a RAM file and a gdbstub socket in the inventory)",
			"secaas kmon policy add --tid 100 --vm VM2 --syscalls 0,1,2,3 --subject vim --object /etc/hosts --action record", []string{"tid", "vm", "syscalls", "subject"}, kmonPolicyAdd},
		{"kmon policy list", "", "a VM's syscall monitoring rules",
			"secaas kmon policy list --tid 100 --vm VM2", []string{"tid", "vm"}, kmonPolicyList},
		{"kmon policy rm", "", "remove a VM's syscall monitoring rule (--rule N) or all of them (--all: the monitor leaves the guest)",
			"secaas kmon policy rm --tid 100 --vm VM2 --rule 0", []string{"tid", "vm"}, kmonPolicyRm},
		{"kmon events", "", "a VM's syscall monitoring events (kmon.record, kmon.block, ...), newest first",
			"secaas kmon events --vm VM2 --since 15m -o wide", nil, kmonEvents},
		{"inventory set", "PORT", "lease a switch port to a tenant, with its VM's host resources (admin)",
			"secaas inventory set vm1 --tenant acme\nsecaas inventory set vm2 --tenant acme --memory /dev/shm/vm2 --qmp /run/secaas/vm2.qmp --disk /var/lib/secaas/images/vm2.qcow2 --disk-mode bitmap --node disk0", []string{"tenant"}, inventorySet},
		{"inventory list", "", "the host inventory (a tenant sees its leased ports, without host paths)",
			"secaas inventory list\nsecaas inventory list -o json", nil, inventoryList},
		{"inventory import", "", "set inventory records from a libvirt domain's XML or this host's Open vSwitch external_ids (admin)",
			"virsh dumpxml web01 | secaas inventory import --libvirt - --tenant acme --host hv1\nsecaas inventory import --ovs --tenant acme --host hv1 --dry-run", []string{"tenant"}, inventoryImport},
		{"inventory delete", "PORT", "remove a port no domain binds from the inventory (admin)",
			"secaas inventory delete vm9", nil, inventoryDelete},
		{"apply", "", "make the daemon's domains what a policy file says: all or nothing, idempotent",
			"secaas apply -f examples/table2.yaml --dry-run --diff\nsecaas apply -f - < policy.yaml", []string{"f"}, applyCmd},
		{"tenant create", "ID", "create a tenant and print its token, shown only once (admin)",
			"secaas tenant create acme --name 'Acme Corp'", nil, tenantCreate},
		{"tenant list", "", "list tenants (a tenant sees itself)",
			"secaas tenant list -o wide", nil, tenantList},
		{"tenant delete", "ID", "delete a tenant that owns no domain and leases no port (admin)",
			"secaas tenant delete acme", nil, tenantDelete},
		{"domain create", "", "create every domain of a policy file",
			"secaas domain create -f examples/table2.yaml", []string{"f"}, domainCreate},
		{"domain list", "", "list the caller's domains",
			"secaas domain list\nsecaas domain list -o yaml", nil, domainList},
		{"domain get", "TID", "print one domain",
			"secaas domain get 100 -o json", nil, domainGet},
		{"domain status", "TID", "where a domain is applied: per host, the revision it enforces and applied, pending or failed",
			"secaas domain status 100\nsecaas domain status 100 -o json", nil, domainStatus},
		{"host list", "", "the hypervisor hosts: generations published, seen and applied (admin)",
			"secaas host list", nil, hostList},
		{"domain delete", "TID", "delete a domain",
			"secaas domain delete 100", nil, domainDelete},
		{"vm add", "", "add a VM to a subnet (its port must be leased to the tenant)",
			"secaas vm add --tid 100 --subnet subD1 --name VM4 --mac 02:00:00:00:00:04 --ip 192.168.1.40 --port vm4", []string{"tid", "subnet", "name", "mac", "ip", "port"}, vmAdd},
		{"vm list", "", "list a domain's VMs",
			"secaas vm list --tid 100 -o wide", []string{"tid"}, vmList},
		{"vm delete", "NAME", "delete a VM",
			"secaas vm delete --tid 100 VM4", []string{"tid"}, vmDelete},
		{"acr add", "", "add an access control rule to a subnet's set",
			"secaas acr add --tid 100 --subnet subD2 --priority 7 --srcmac VM3 --proto udp --dport 53 --action pass", []string{"tid", "subnet", "priority", "action"}, acrAdd},
		{"acr list", "", "list a domain's ACRs",
			"secaas acr list --tid 100 -o wide", []string{"tid"}, acrList},
		{"acr delete", "ID", "delete an ACR",
			"secaas acr delete --tid 100 acr-1a2b3c4d", []string{"tid"}, acrDelete},
		{"nad enable", "", "monitor a VM's traffic for anomalies (alerts: secaas events --kind nad.)",
			"secaas nad enable --tid 100 --vm VM3 --window 60s --history 120", []string{"tid", "vm"}, nadEnable},
		{"nad disable", "", "stop monitoring a VM's traffic",
			"secaas nad disable --tid 100 --vm VM3", []string{"tid", "vm"}, nadDisable},
		{"vmi enable", "", "monitor a VM's memory (its RAM file: the inventory record of its port)",
			"secaas vmi enable --tid 100 --vm VM2 --interval 2s", []string{"tid", "vm"}, vmiEnable},
		{"vmi disable", "", "stop monitoring a VM's memory",
			"secaas vmi disable --tid 100 --vm VM2", []string{"tid", "vm"}, vmiDisable},
		{"av enable", "", "HyperAV for a VM's disk (how it is reached: the inventory record of its port)",
			"secaas av enable --tid 100 --vm VM2 --paths /etc/passwd,/usr/bin/sshd --schedule 30s", []string{"tid", "vm"}, avEnable},
		{"av disable", "", "stop HyperAV for a VM",
			"secaas av disable --tid 100 --vm VM2", []string{"tid", "vm"}, avDisable},
		{"av status", "", "a VM disk's sector state and file verdicts",
			"secaas av status --tid 100 --vm VM2 -o json", []string{"tid", "vm"}, avStatus},
		{"av isolate", "", "isolate a file's sectors (front: reads return zeros; bitmap: quarantine, then zero)",
			"secaas av isolate --tid 100 --vm VM2 --path /etc/x", []string{"tid", "vm", "path"}, avIsolate},
		{"check", "", "the daemon's oracle verdict for a packet between two VMs (exit 3 for DROP)",
			"secaas check --tid 100 --from VM1 --to VM3 --proto tcp --dport 22 && echo passes", []string{"tid", "from", "to"}, apiCheck},
		{"events", "", "event history, newest first",
			"secaas events --kind vmi. --since 15m\nsecaas events --follow", nil, events},
		{"version", "", "print the version of this build",
			"secaas version\nsecaas version -o json", nil, versionCmd},
	}
}

// Exit codes.
const (
	ExitOK       = 0 // done; a PASS or CLEAN verdict
	ExitError    = 1 // the command failed
	ExitUsage    = 2 // a bad command line: unknown command or flag, missing argument, bad value
	ExitNegative = 3 // done, and the verdict is DROP (acl check, acl trace, check) or INFECTED (av scan)
)

// exitError carries a specific exit status.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// usageError is a bad command line (exit 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// Main runs the command line args (without the program name) and returns
// the exit status.
func Main(ctx context.Context, env *Env, args []string) int {
	e := *env
	e.args = args
	root := newRoot(ctx, &e)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return int(ee)
	}
	path := "secaas"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(env.Stderr, "%s: %v\n", path, err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "(%s --help shows how to use it)\n", path)
		return ExitUsage
	}
	return ExitError
}

func newFlags(name string, env *Env) *flag.FlagSet {
	fs := flag.NewFlagSet("secaas "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	if env.declare != nil {
		*env.declare = fs
		declaring.Store(fs, true)
	}
	return fs
}

// declaring marks the flag sets of a declaration pass: parse stops there.
var declaring sync.Map

// errDeclared ends a declaration pass once the flags are declared.
var errDeclared = errors.New("flags declared")

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	if _, ok := declaring.LoadAndDelete(fs); ok {
		return nil, errDeclared
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func mustFile(f string) error {
	if f == "" {
		return errors.New("-f POLICY is required")
	}
	return nil
}
