package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"secaas/internal/daemon"
	"secaas/internal/lab"
	"secaas/internal/lab/labtest"
	"secaas/internal/tenant"
)

func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}, args)
	if code != 0 {
		return out.String() + errb.String(), code
	}
	return out.String(), code
}

func runCLIStdin(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), &Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(stdin), Getenv: func(string) string { return "" }}, args)
	return out.String() + errb.String(), code
}

// TestEmptyPolicyRefused: acl apply of a policy with no domain or no VM
// would make the bridge drop everything; it needs --allow-empty.
func TestEmptyPolicyRefused(t *testing.T) {
	for _, pol := range []string{"domains: []\n", "domains:\n  - {tid: 5, name: d, subnets: [{name: s}]}\n"} {
		out, code := runCLIStdin(t, pol, "acl", "apply", "-f", "-", "--bridge", "nonexistent-br")
		if code == 0 || !strings.Contains(out, "--allow-empty") {
			t.Errorf("%q: %d %s", pol, code, out)
		}
	}
}

func TestOfflineCommands(t *testing.T) {
	out, code := runCLI(t, "acl", "compile", "-f", "../../examples/table2.yaml")
	golden, err := os.ReadFile("../flow/testdata/table2.golden")
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.HasSuffix(out, string(golden)) || !strings.Contains(out, "vm1=1 vm2=2 vm3=3") {
		t.Fatalf("acl compile (%d):\n%s", code, out)
	}
	out, code = runCLI(t, "acl", "check", "-f", "../../examples/table2.yaml", "--from", "VM1", "--to", "VM3", "--proto", "tcp", "--dport", "22", "-o", "json")
	var v tenant.Verdict
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Action != tenant.Pass || len(v.Rules) != 2 {
		t.Fatalf("acl check (%d): %s", code, out)
	}
	out, _ = runCLI(t, "acl", "check", "-f", "../../examples/table2.yaml", "--from", "VM1", "--to", "VM3", "--proto", "icmp")
	if !strings.HasPrefix(out, "oracle  DROP") || !strings.Contains(out, "td100/subD1/acr1") {
		t.Fatalf("acl check icmp: %s", out)
	}
	for _, bad := range [][]string{
		{"acl", "check", "-f", "../../examples/table2.yaml", "--from", "VM9", "--to", "VM3"},
		{"acl", "compile"},
		{"acl", "compile", "-f", "/nonexistent.yaml"},
		{"acl", "compile", "-f", "../../examples/table2.yaml", "--ports", "vm1=x"},
		{"no", "such", "command"},
	} {
		if out, code := runCLI(t, bad...); code == 0 {
			t.Errorf("%v succeeded: %s", bad, out)
		}
	}
}

// TestEndToEnd drives secaasd's parts (API, store, real agent, real OVS)
// through the CLI and checks enforcement with real packets.
func TestEndToEnd(t *testing.T) {
	labtest.RequireOVS(t)
	ctx := context.Background()
	br := labtest.Bridge(t, "scce")
	policy := labtest.Table2(t, "../..", "cevm")
	_, n, err := tenant.LoadPolicy(policy)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := lab.HostsFor(ctx, br, n, "scce-", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.RemoveAll(context.Background(), br, hosts) })
	const admin = "e2e-admin-token-0123456789"
	roots := t.TempDir()
	d, err := daemon.New(ctx, daemon.Config{DB: ":memory:", Bridge: br, AdminToken: admin,
		ImageRoot: filepath.Join(roots, "images"), RunRoot: filepath.Join(roots, "run"), ShmRoot: filepath.Join(roots, "shm"),
		DataDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srv := httptest.NewServer(d.API)
	defer srv.Close()

	out, code := runCLI(t, "tenant", "create", "demo", "--api", srv.URL, "--token", admin)
	var tn struct{ Token string }
	if code != 0 || json.Unmarshal([]byte(out), &tn) != nil || tn.Token == "" {
		t.Fatalf("tenant create (%d): %s", code, out)
	}
	api := []string{"--api", srv.URL, "--token", tn.Token}
	// A tenant binds only the ports the host inventory leases to it.
	if out, code := runCLI(t, append([]string{"domain", "create", "-f", policy}, api...)...); code == 0 || !strings.Contains(out, "not leased") {
		t.Fatalf("domain create on unleased ports: %s", out)
	}
	for _, port := range []string{"cevm1", "cevm2", "cevm3"} {
		if out, code := runCLI(t, "inventory", "set", port, "--tenant", "demo", "--api", srv.URL, "--token", admin); code != 0 {
			t.Fatalf("inventory set: %s", out)
		}
	}
	if out, code := runCLI(t, append([]string{"inventory", "list", "-o", "json"}, api...)...); code != 0 || strings.Count(out, `"tenant": "demo"`) != 3 {
		t.Fatalf("inventory list: %s", out)
	}
	if out, code := runCLI(t, append([]string{"domain", "create", "-f", policy}, api...)...); code != 0 {
		t.Fatalf("domain create: %s", out)
	}
	// Inventory from a libvirt domain's XML: shown with --dry-run, then set.
	xml, err := os.ReadFile("../inventory/testdata/libvirt-running.xml")
	if err != nil {
		t.Fatal(err)
	}
	lx := strings.NewReplacer("/var/lib/secaas/images", filepath.Join(roots, "images"), "/run/secaas", filepath.Join(roots, "run"),
		"/dev/shm", filepath.Join(roots, "shm")).Replace(string(xml))
	adm := []string{"--api", srv.URL, "--token", admin, "--wait", "0"} // hv9 has no agent: do not wait for it
	if out, code := runCLIStdin(t, lx, append([]string{"inventory", "import", "--libvirt", "-", "--tenant", "demo", "--host", "hv9", "--dry-run", "-o", "json"}, adm...)...); code != 0 || !strings.Contains(out, `"web01-eth0"`) {
		t.Fatalf("inventory import --dry-run (%d): %s", code, out)
	}
	if out, _ := runCLI(t, append([]string{"inventory", "list", "-o", "json"}, adm...)...); strings.Contains(out, "web01") {
		t.Fatalf("a dry run set records: %s", out)
	}
	if out, code := runCLIStdin(t, lx, append([]string{"inventory", "import", "--libvirt", "-", "--tenant", "demo", "--host", "hv9"}, adm...)...); code != 0 || !strings.Contains(out, "hv9") {
		t.Fatalf("inventory import (%d): %s", code, out)
	}
	if out, code := runCLI(t, append([]string{"inventory", "list", "-o", "json"}, adm...)...); code != 0 || !strings.Contains(out, `"web01-eth1"`) || !strings.Contains(out, `"libvirt-2-format"`) {
		t.Fatalf("inventory after import: %s", out)
	}
	if out, code := runCLIStdin(t, string(xml), append([]string{"inventory", "import", "--libvirt", "-", "--tenant", "demo"}, adm...)...); code == 0 || !strings.Contains(out, "root") {
		t.Fatalf("import of paths outside the roots (%d): %s", code, out)
	}
	for _, port := range []string{"web01-eth0", "web01-eth1"} {
		if out, code := runCLI(t, append([]string{"inventory", "delete", port}, adm...)...); code != 0 {
			t.Fatalf("inventory delete: %s", out)
		}
	}
	// The domain is applied on this host; the admin sees the host.
	if out, code := runCLI(t, append([]string{"domain", "status", "100"}, api...)...); code != 0 || !strings.Contains(out, "applied") || strings.Contains(out, "pending") {
		t.Fatalf("domain status: %s", out)
	}
	if out, code := runCLI(t, "host", "list", "--api", srv.URL, "--token", admin); code != 0 || !strings.Contains(out, "applied") {
		t.Fatalf("host list: %s", out)
	}
	if out, code := runCLI(t, append([]string{"host", "list"}, api...)...); code == 0 || !strings.Contains(out, "admin") {
		t.Fatalf("host list as a tenant: %s", out)
	}
	// Syscall monitoring rules through the CLI: the port needs its RAM
	// file and gdbstub socket in the inventory first; rules are added,
	// listed and removed; this node has no monitor object, so the agent
	// says it waits.
	kmonArgs := func(args ...string) []string { return append(append([]string{"kmon", "policy"}, args...), api...) }
	if out, code := runCLI(t, kmonArgs("add", "--tid", "100", "--vm", "VM2", "--syscalls", "0-3", "--subject", "vim")...); code == 0 || !strings.Contains(out, "inventory") {
		t.Fatalf("kmon policy add without the host resources (%d): %s", code, out)
	}
	if out, code := runCLI(t, "inventory", "set", "cevm2", "--tenant", "demo", "--memory", filepath.Join(roots, "shm", "g2"), "--gdb", filepath.Join(roots, "run", "g2.gdb"),
		"--api", srv.URL, "--token", admin); code != 0 {
		t.Fatalf("inventory set --gdb: %s", out)
	}
	if out, code := runCLI(t, kmonArgs("add", "--tid", "100", "--vm", "VM2", "--syscalls", "0-3", "--subject", "vim", "--object", "/etc/hosts")...); code != 0 {
		t.Fatalf("kmon policy add (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("add", "--tid", "100", "--vm", "VM2", "--syscalls", "2,257", "--subject", "cat", "--action", "block")...); code != 0 {
		t.Fatalf("kmon policy add (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("add", "--tid", "100", "--vm", "VM2", "--syscalls", "2", "--subject", "cat", "--action", "kill")...); code == 0 || !strings.Contains(out, "neither record nor block") {
		t.Fatalf("kmon policy add with a bad action (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("list", "--tid", "100", "--vm", "VM2")...); code != 0 || !strings.Contains(out, "0,1,2,3") || !strings.Contains(out, "2,257") {
		t.Fatalf("kmon policy list (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("rm", "--tid", "100", "--vm", "VM2", "--rule", "0")...); code != 0 {
		t.Fatalf("kmon policy rm (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("list", "--tid", "100", "--vm", "VM2", "-o", "json")...); code != 0 || strings.Contains(out, "vim") || !strings.Contains(out, `"block"`) {
		t.Fatalf("kmon policy list after rm (%d): %s", code, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, code := runCLI(t, append([]string{"kmon", "events", "--vm", "VM2", "-o", "wide"}, api...)...)
		if code == 0 && strings.Contains(out, "kmon.waiting") && strings.Contains(out, "monitor object") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmon events (%d): %s", code, out)
		}
	}
	if out, code := runCLI(t, kmonArgs("rm", "--tid", "100", "--vm", "VM2", "--all")...); code != 0 {
		t.Fatalf("kmon policy rm --all (%d): %s", code, out)
	}
	if out, code := runCLI(t, kmonArgs("list", "--tid", "100", "--vm", "VM2", "-o", "json")...); code != 0 || strings.Contains(out, "cat") {
		t.Fatalf("kmon policy list after rm --all (%d): %s", code, out)
	}
	// Declarative apply of the same file: nothing to change.
	policyText, _ := os.ReadFile(policy)
	if out, code := runCLIStdin(t, string(policyText), append([]string{"apply", "-f", "-"}, api...)...); code != 0 || !strings.Contains(out, "unchanged") || !strings.Contains(out, "no change") {
		t.Fatalf("apply of the created policy (%d): %s", code, out)
	}
	// A changed file as a dry run with a diff: the switch is not touched.
	changed := strings.Replace(string(policyText), "acrs:", "acrs:\n          - {priority: 9, srcmac: [VM1], dstmac: [VM2], proto: udp, dstport: 53, action: pass}", 1)
	before, _ := br.DumpFlows(ctx)
	out, code = runCLIStdin(t, changed, append([]string{"apply", "-f", "-", "--dry-run", "--diff"}, api...)...)
	if code != 0 || !strings.Contains(out, "replaced (dry run") || !strings.Contains(out, "+ ") || !strings.Contains(out, "tp_dst=53") {
		t.Fatalf("apply --dry-run --diff (%d): %s", code, out)
	}
	if after, _ := br.DumpFlows(ctx); after != before {
		t.Fatal("a dry run changed the switch")
	}
	if out, code := runCLIStdin(t, changed, append([]string{"apply", "-f", "-"}, api...)...); code != 0 || !strings.Contains(out, "replaced") {
		t.Fatalf("apply (%d): %s", code, out)
	}
	if after, _ := br.DumpFlows(ctx); after == before || !strings.Contains(after, "tp_dst=53") {
		t.Fatal("apply did not reach the switch")
	}
	if out, code := runCLIStdin(t, changed, append([]string{"apply", "-f", "-"}, api...)...); code != 0 || !strings.Contains(out, "no change") {
		t.Fatalf("second apply (%d): %s", code, out)
	}
	if out, code := runCLIStdin(t, string(policyText), append([]string{"apply", "-f", "-"}, api...)...); code != 0 || !strings.Contains(out, "replaced") {
		t.Fatalf("apply back (%d): %s", code, out)
	}
	// -o round trips: json and yaml parse back into the API's types.
	out, code = runCLI(t, append([]string{"domain", "get", "100", "-o", "json"}, api...)...)
	var got tenant.Domain
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.TID != 100 || len(got.Subnets) != 2 || got.Revision < 1 {
		t.Fatalf("domain get -o json (%d): %s", code, out)
	}
	out, code = runCLI(t, append([]string{"acr", "list", "--tid", "100", "-o", "yaml"}, api...)...)
	var acrs []struct {
		tenant.ACR `yaml:",inline"`
		Subnet     string `yaml:"subnet"`
	}
	if code != 0 || yaml.Unmarshal([]byte(out), &acrs) != nil || len(acrs) != 5 || acrs[0].Subnet != "subD1" || acrs[0].ID == "" {
		t.Fatalf("acr list -o yaml (%d): %s", code, out)
	}
	for _, f := range []string{"table", "wide"} {
		out, code = runCLI(t, append([]string{"vm", "list", "--tid", "100", "-o", f}, api...)...)
		if code != 0 || !strings.Contains(out, "VM1") || (f == "wide") != strings.Contains(out, "UUID") {
			t.Fatalf("vm list -o %s (%d): %s", f, code, out)
		}
	}
	// A DROP verdict from the daemon exits 3.
	if out, code := runCLI(t, append([]string{"check", "--tid", "100", "--from", "VM1", "--to", "VM3", "--proto", "icmp"}, api...)...); code != ExitNegative {
		t.Fatalf("check DROP (%d): %s", code, out)
	}
	rows, err := Matrix(ctx, n, hosts, 22)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if bad := PrintMatrix(&buf, rows, 22); bad != 0 {
		t.Fatalf("matrix disagrees with the oracle:\n%s", buf.String())
	}
	want := map[string][2]bool{"VM1>VM2": {true, true}, "VM1>VM3": {false, true}, "VM3>VM1": {false, false}}
	for _, r := range rows {
		if w, ok := want[r.From+">"+r.To]; ok && (r.Ping != w[0] || *r.TCP != w[1]) {
			t.Fatalf("%s->%s: ping %v tcp %v, want %v\n%s", r.From, r.To, r.Ping, *r.TCP, w, buf.String())
		}
	}
	// Open ICMP between the subnets through the API: the real ping follows.
	if out, code := runCLI(t, append([]string{"acr", "add", "--tid", "100", "--subnet", "subD2", "--priority", "7",
		"--srcmac", "VM1,VM3", "--dstmac", "VM1,VM3", "--proto", "icmp", "--action", "pass"}, api...)...); code != 0 {
		t.Fatalf("acr add: %s", out)
	}
	vm3, _ := n.VMByName(100, "VM3")
	if !hosts["cevm1"].Ping(ctx, vm3.Addr, 3, 2*time.Second) {
		t.Fatal("ping VM1->VM3 still dropped after the API change")
	}
	out, code = runCLI(t, append([]string{"check", "--tid", "100", "--from", "VM1", "--to", "VM3", "--proto", "icmp"}, api...)...)
	if code != 0 || !strings.HasPrefix(out, "oracle  PASS") {
		t.Fatalf("check: %s", out)
	}
	// The switch agrees with the policy file for what the file still says.
	if out, code := runCLI(t, "acl", "trace", "-f", policy, "--bridge", br.Name, "--from", "VM1", "--to", "VM3", "--proto", "tcp", "--dport", "22"); code != 0 {
		t.Fatalf("acl trace: %s", out)
	}
	// Another tenant's token sees nothing.
	out, _ = runCLI(t, "tenant", "create", "other", "--api", srv.URL, "--token", admin)
	var other struct{ Token string }
	json.Unmarshal([]byte(out), &other)
	if out, code := runCLI(t, "domain", "get", "100", "--api", srv.URL, "--token", other.Token); code == 0 || !strings.Contains(out, "404") {
		t.Fatalf("other tenant read domain 100: %s", out)
	}
}

func TestNADFeaturesOnRealCapture(t *testing.T) {
	pcap := filepath.Join(labtest.DataDir(t), "pcaps", "stopddos-tcp-synflood-spoofed.pcap")
	out, code := runCLI(t, "nad", "features", "--pcap", pcap, "--window", "5s", "--set", "lstm")
	if code != 0 {
		t.Fatalf("nad features: %s", out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) < 3 {
		t.Fatalf("csv: %v\n%s", err, out)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	first := rows[1]
	if first[col["server"]] != "10.10.10.10" || first[col["syn_rate"]] != "1" {
		t.Fatalf("first window %v", first)
	}
	if n, _ := strconv.Atoi(first[col["ip_count"]]); n < 10000 {
		t.Fatalf("spoofed flood shows only %d client IPs", n)
	}
	if out, code := runCLI(t, "nad", "features", "--pcap", "/nonexistent"); code == 0 {
		t.Fatalf("missing file accepted: %s", out)
	}
}

// TestNADDetectSaysWhatItJudged: a capture too short for the history
// judges nothing, and says so (text and JSON, never null); an LSTM detector
// without a model is refused before any work.
func TestNADDetectSaysWhatItJudged(t *testing.T) {
	pcap := filepath.Join(labtest.DataDir(t), "pcaps", "esnet-masscan-tcp-0-1000.pcap")
	out, code := runCLI(t, "nad", "detect", "--pcap", pcap, "--window", "1s", "-o", "json")
	var res struct {
		Windows, Judged int
		Summary         string
		Results         []json.RawMessage
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("nad detect: %d %s", code, out)
	}
	if res.Windows != 10 || res.Judged != 0 || res.Results == nil || !strings.Contains(res.Summary, "120 windows of history") {
		t.Fatalf("short capture: %+v", res)
	}
	out, code = runCLI(t, "nad", "detect", "--pcap", pcap, "--window", "1s", "--history", "5", "-o", "json")
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Judged != 5 {
		t.Fatalf("history 5: %+v %s", res, out)
	}
	if out, code := runCLI(t, "nad", "detect", "--pcap", pcap, "--detector", "lstm"); code == 0 || !strings.Contains(out, "needs --model") {
		t.Fatalf("lstm without a model: %d %s", code, out)
	}
}

// TestBenchAVOptions: bench av refuses bad options, saying why, before it
// does any work (no table is printed).
func TestBenchAVOptions(t *testing.T) {
	for want, args := range map[string][]string{
		`cache mode "directsync"`: {"bench", "av", "--cache", "directsync"},
		`table 7 mode "mirror"`:   {"bench", "av", "--modes", "mirror"},
		"at least 100 writes":     {"bench", "av", "--modes", "bitmap", "--cost-writes", "10"},
		"at least one round":      {"bench", "av", "--rounds", "0"},
	} {
		out, code := runCLI(t, args...)
		if code == 0 || !strings.Contains(out, want) || strings.Contains(out, "Table 8") {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}
}

// TestNoSecretInOutput plants a token in every place the CLI reads one
// and runs every command's help, a usage error and a request to a closed
// port: the token must appear in none of their output.
func TestNoSecretInOutput(t *testing.T) {
	const planted = "st_PLANTEDsecretTOKEN0123456789abcdef"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SECAAS_TOKEN": planted, "SECAAS_TOKEN_FILE": file, "SECAAS_API": "http://127.0.0.1:1"}
	run := func(args ...string) string {
		var out, errb bytes.Buffer
		Main(context.Background(), &Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}, args)
		return out.String() + errb.String()
	}
	check := func(what, out string) {
		t.Helper()
		if strings.Contains(out, planted) || strings.Contains(out, planted[:12]) {
			t.Errorf("%s prints the token:\n%s", what, out)
		}
	}
	check("usage", run("--help"))
	check("unknown command", run("no", "such"))
	for _, c := range commands() {
		words := strings.Fields(c.name)
		check(c.name+" --help", run(append(words, "--help")...))
		check(c.name+" --bogus", run(append(words, "--no-such-flag")...))
	}
	// A request that cannot connect names the address and how to fix it,
	// and not the token.
	out := run("tenant", "list")
	check("tenant list", out)
	if !strings.Contains(out, "127.0.0.1:1") || !strings.Contains(out, "--api") {
		t.Errorf("a refused connection: %s", out)
	}
}

// TestTokenSources: the token reaches the daemon from each source, the
// flag first, and a missing token file is an error that names it.
func TestTokenSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"SECAAS_TOKEN": "from-env"}, nil, "from-env"},
		{map[string]string{"SECAAS_TOKEN_FILE": file}, nil, "from-file"},
		{map[string]string{"SECAAS_TOKEN": "from-env"}, []string{"--token", "from-flag"}, "from-flag"},
		{map[string]string{"SECAAS_TOKEN": "from-env"}, []string{"--token-file", file}, "from-file"},
	} {
		env := &Env{Getenv: func(k string) string { return tc.env[k] }}
		fs := newFlags("t", env)
		c := addClientFlags(fs, env)
		if _, err := parse(fs, tc.args); err != nil {
			t.Fatal(err)
		}
		if got, err := c.bearer(); err != nil || got != tc.want {
			t.Errorf("%v %v: %q %v, want %q", tc.env, tc.args, got, err, tc.want)
		}
	}
	env := &Env{Getenv: func(k string) string { return map[string]string{"SECAAS_TOKEN_FILE": filepath.Join(dir, "none")}[k] }}
	c := addClientFlags(newFlags("t", env), env)
	if _, err := c.bearer(); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Errorf("missing token file: %v", err)
	}
}

// TestCLIContract: every verb has a description and examples in its help,
// on stdout with exit 0; a group lists its verbs; usage errors exit 2
// before anything runs; a DROP verdict exits 3; -f - reads standard
// input; completion scripts and the version come out.
func TestCLIContract(t *testing.T) {
	run := func(stdin string, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), &Env{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(stdin),
			Getenv: func(k string) string { return map[string]string{"SECAAS_API": "http://127.0.0.1:1"}[k] }}, args)
		return out.String(), errb.String(), code
	}
	for _, c := range commands() {
		out, errs, code := run("", append(strings.Fields(c.name), "--help")...)
		if code != 0 || errs != "" || !strings.Contains(out, c.short) || !strings.Contains(out, "Examples:") || !strings.Contains(out, "secaas "+c.name) {
			t.Errorf("%s --help (%d): stdout %q stderr %q", c.name, code, out, errs)
		}
	}
	out, _, code := run("", "acl")
	for _, verb := range []string{"compile", "check", "trace", "apply", "migrate"} {
		if code != 0 || !strings.Contains(out, "  "+verb+" ") {
			t.Errorf("secaas acl does not list %s: %s", verb, out)
		}
	}
	// Usage errors: exit 2, and nothing was tried (no connection refused).
	for _, args := range [][]string{
		{"no", "such"}, {"acl", "bogus"}, {"acl", "check", "--from", "VM1"}, {"vm", "list"},
		{"events", "--limit", "many"}, {"lab", "traffic", "--duration", "soon"}, {"domain", "get"},
		{"domain", "get", "1", "2"}, {"tenant", "list", "-o", "xml"}, {"acl", "compile", "--no-such-flag"},
	} {
		_, errs, code := run("", args...)
		if code != ExitUsage || strings.Contains(errs, "cannot reach") {
			t.Errorf("%v: exit %d, %s", args, code, errs)
		}
	}
	// Verdicts: PASS 0, DROP 3, from a policy on standard input.
	pol, err := os.ReadFile("../../examples/table2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, code := run(string(pol), "acl", "check", "-f", "-", "--from", "VM1", "--to", "VM3", "--proto", "tcp", "--dport", "22"); code != ExitOK {
		t.Errorf("PASS verdict: exit %d", code)
	}
	out, _, code = run(string(pol), "acl", "check", "-f", "-", "--from", "VM1", "--to", "VM3", "--proto", "icmp", "-o", "json")
	var v tenant.Verdict
	if code != ExitNegative || json.Unmarshal([]byte(out), &v) != nil || v.Action != tenant.Drop {
		t.Errorf("DROP verdict: exit %d, %s", code, out)
	}
	out, _, code = run(string(pol), "acl", "compile", "-f", "-")
	if code != 0 || !strings.Contains(out, "actions=") {
		t.Errorf("compile from stdin: %d %s", code, out)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out, _, code := run("", "completion", sh); code != 0 || len(out) < 500 || !strings.Contains(out, "secaas") {
			t.Errorf("completion %s: %d, %d bytes", sh, code, len(out))
		}
	}
	out, _, code = run("", "version", "-o", "json")
	var ver map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &ver) != nil || ver["version"] == "" || ver["go"] == "" {
		t.Errorf("version: %d %s", code, out)
	}
	// The API is unreachable: exit 1 with the address and the way out.
	if _, errs, code := run("", "domain", "list"); code != ExitError || !strings.Contains(errs, "127.0.0.1:1") {
		t.Errorf("unreachable daemon: %d %s", code, errs)
	}
}
