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
)

// Env is what a command may touch.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Stdin          io.Reader // "-f -" reads the policy from it (nil: none)
}

type command struct {
	name, usage string
	run         func(ctx context.Context, env *Env, args []string) error
}

func commands() []command {
	return []command{
		{"acl compile", "-f POLICY [--ports name=N,...]: print the OpenFlow flow set", aclCompile},
		{"acl check", "-f POLICY --from VM --to VM [--proto tcp|udp|icmp] [--sport N] [--dport N] [--json]: the oracle's verdict and rule", aclCheck},
		{"acl trace", "-f POLICY --bridge BR --from VM --to VM ...: ask the real switch (ofproto/trace) and compare with the oracle", aclTrace},
		{"acl apply", "-f POLICY|- --bridge BR [--allow-empty]: enforce a policy file on a bridge without the daemon", aclApply},
		{"acl migrate", "-f POLICY [--out FILE]: rewrite a policy of an earlier version: VMs named like addresses, MACs or wildcards renamed (rules follow), prefixes masked", aclMigrate},
		{"lab up", "-f POLICY --bridge BR [--prefix P]: one namespace per VM, attached to the bridge", labUp},
		{"lab down", "-f POLICY --bridge BR [--prefix P]: remove the lab's namespaces", labDown},
		{"lab matrix", "-f POLICY [--prefix P] [--json]: reachability matrix from real pings and TCP connects, beside the oracle", labMatrix},
		{"nad features", "--pcap FILE [--server IP,...] [--window 60s] [--set stability|lstm|both] [--format csv|json]: the feature table of a capture", nadFeatures},
		{"nad detect", "--pcap FILE [--server IP,...] [--window 60s] [--history N] [--format text|json]: the stability detectors over a capture", nadDetect},
		{"nad eval", "--pcap FILE --labels FILE [--window 1s] [--history N] [--k 4] [--detector stability|normalized|all] [--json]: Table 5 grid, FPR, ROC AUC", nadEval},
		{"lab traffic", "[--seed S] [--duration D] [--warmup D] [--gap D] [--per-setting N] [--out DIR]: benign load + nmap/hping3 attacks, mirrored capture and labels", labTraffic},
		{"lab guest up", "[--name N] [--mem 512] [--flavour amd64|cloud-amd64] [--cpu max] [--accel auto|kvm|tcg] [--rootkit] [--data-disk IMG | --nbd-disk SOCK | --vhost-disk SOCK]: boot a test guest (Debian kernel, busybox) that keeps running; RAM in /dev/shm/N", labGuestUp},
		{"lab guest run", "[--name N] [--timeout 1m] CMD...: run a shell command on the guest's console and print its output", labGuestRun},
		{"lab guest dump", "[--name N] --out FILE: write the guest's memory as an ELF core (QMP dump-guest-memory)", labGuestDump},
		{"lab guest down", "[--name N]: stop the guest and remove its files", labGuestDown},
		{"vmi ps", "--ram /dev/shm/GUEST | --image DUMP | --vm NAME --tid N [--json]: processes (pid, ppid, uid, start, exe) and hidden ones, from memory alone", vmiPS},
		{"vmi modules", "--ram /dev/shm/GUEST | --image DUMP | --vm NAME --tid N [--json]: kernel modules and hidden ones", vmiModules},
		{"av scan", "--image DISK --path /etc/x [--path ...] [--partition N] [--signatures DIR] [--hashes FILE] [--state FILE] [--json]: scan files inside a disk image (raw/qcow2), no VM; or --vm NAME --tid N --path P through secaasd", avScan},
		{"bench acl", "[--acrs N] [--seconds S] [--out FILE]: compile/apply/enforcement timings and the paper's Table 3/4 experiment", benchACL},
		{"bench drift", "[--interval 2s] [--trials 5] [--restarts 3] [--ping-every 10ms] [--seed 1] [--out FILE]: time to repair flow tampering (delete, add, modify in place) and packets lost across secaasd restarts, with the real daemon", benchDrift},
		{"bench nad", "[--packets N] [--out FILE]: packets per second and allocations of decode + features", benchNAD},
		{"bench vmi", "[--out FILE]: a memory monitoring cycle (list walk + full scan) on 512 MiB and 2 GiB guests", benchVMI},
		{"bench av", "[--table7=false] [--modes bitmap,front,front-vhost] [--cache writeback,none] [--seconds 2] [--rounds 10] [--interleave=true] [--burst 64] [--vhost-poll 0] [--out FILE]: the paper's Table 8 (\"changed?\" vs MD5 vs ClamAV) and Table 7 (guest write loss, both modes)", benchAV},
		{"inventory set", "PORT --tenant T [--uplink] [--vm NAME] [--memory FILE] [--qmp SOCK] [--disk IMG --disk-mode bitmap|front [--node N] [--device D] [--socket SOCK] [--transport nbd|vhost-user] [--cache writeback|none] [--guest-port SOCK]] (admin): lease a switch port to a tenant, with its VM's host resources", inventorySet},
		{"inventory list", ": the host inventory (a tenant sees its leased ports, without host paths)", inventoryList},
		{"inventory delete", "PORT (admin): remove a port no domain binds", inventoryDelete},
		{"apply", "-f POLICY|- [--dry-run] [--diff] [--tenant T]: make the daemon's domains what the file says, all or nothing; a second run changes nothing", applyCmd},
		{"tenant create", "ID [--name NAME]: create a tenant (admin); prints its token", tenantCreate},
		{"tenant list", ": list tenants", tenantList},
		{"tenant delete", "ID: delete a tenant", tenantDelete},
		{"domain create", "-f POLICY: create every domain of a policy file", domainCreate},
		{"domain list", ": list domains", domainList},
		{"domain get", "TID: print one domain", domainGet},
		{"domain delete", "TID: delete a domain", domainDelete},
		{"vm add", "--tid N --subnet S --name N --mac M --ip A --port P: add a VM", vmAdd},
		{"vm list", "--tid N: list VMs", vmList},
		{"vm delete", "--tid N NAME: delete a VM", vmDelete},
		{"acr add", "--tid N --subnet S --priority P [--srcmac a,b] [--dstmac ..] [--srcip ..] [--dstip ..] [--proto P] [--sport R] [--dport R] --action pass|drop", acrAdd},
		{"acr list", "--tid N: list ACRs", acrList},
		{"acr delete", "--tid N ID: delete an ACR", acrDelete},
		{"nad enable", "--tid N --vm NAME [--window 60s] [--history 120] [--detector normalized|stability]: monitor a VM (alerts: secaas events)", nadEnable},
		{"nad disable", "--tid N --vm NAME: stop monitoring a VM", nadDisable},
		{"vmi enable", "--tid N --vm NAME [--interval 10s] [--indicators LIST]: monitor a VM's memory (its RAM file: the host inventory of its port; alarms: secaas events)", vmiEnable},
		{"vmi disable", "--tid N --vm NAME: stop monitoring a VM's memory", vmiDisable},
		{"av enable", "--tid N --vm NAME [--paths a,b] [--schedule 30s] [--partition N] [--policy any|majority] [--engines LIST]: HyperAV for a VM's disk (how it is reached: the host inventory of its port)", avEnable},
		{"av disable", "--tid N --vm NAME: stop HyperAV for a VM", avDisable},
		{"av status", "--tid N --vm NAME: sector state and file verdicts", avStatus},
		{"av isolate", "--tid N --vm NAME --path P: isolate a file's sectors (front: reads return zeros; bitmap: quarantine, then zero)", avIsolate},
		{"check", "--tid N --from VM --to VM [--proto P] [--dport N]: the daemon's oracle verdict", apiCheck},
		{"events", "[--limit 100] [--since 15m|TIME] [--kind K|PREFIX.] [--vm NAME] [--after ID] [--follow]: event history, newest first", events},
	}
}

// Main runs the command line args (without the program name).
func Main(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stdout)
		return 0
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			err := c.run(ctx, env, args[len(words):])
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			if err != nil {
				fmt.Fprintf(env.Stderr, "secaas %s: %v\n", c.name, err)
				var ee exitError
				if errors.As(err, &ee) {
					return int(ee)
				}
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(env.Stderr, "secaas: unknown command %q\n\n", strings.Join(args, " "))
	usage(env.Stderr)
	return 2
}

// exitError carries a specific exit status.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: secaas COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nAPI commands use --api (or SECAAS_API, default http://127.0.0.1:8470) and the token from SECAAS_TOKEN,\nthe file SECAAS_TOKEN_FILE, --token-file or --token.")
}

func newFlags(name string, env *Env) *flag.FlagSet {
	fs := flag.NewFlagSet("secaas "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	return fs
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
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
