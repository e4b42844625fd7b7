package ovs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"secaas/internal/flow"
)

// ErrNoOVS is returned when the Open vSwitch tools are not installed.
var ErrNoOVS = errors.New("open vswitch tools not found")

// OFVersion is the OpenFlow version used for flows and bundles.
//
// Every ovs-ofctl call here says --no-names: ports and tables are
// numbers in what we write and read, and without it ovs-ofctl first asks
// the switch for every table's features to learn their names (about
// 7 ms of a 10 ms one-flow change).
const OFVersion = "OpenFlow14"

// runner runs a command and returns its standard output; the seam for fakes.
type runner func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)

func execRunner(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	return runEnv(ctx, nil, stdin, name, args...)
}

// runEnv runs a command with env (nil: this process's environment).
func runEnv(ctx context.Context, env []string, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoOVS)
		}
		return out.Bytes(), &CmdError{Cmd: name + " " + strings.Join(args, " "), Stderr: strings.TrimSpace(errb.String()), Err: err}
	}
	return out.Bytes(), nil
}

// CmdError is a failed OVS command with what it printed.
type CmdError struct {
	Cmd    string
	Stderr string
	Err    error
}

func (e *CmdError) Error() string { return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Stderr) }
func (e *CmdError) Unwrap() error { return e.Err }

// Bridge is one OVS bridge.
type Bridge struct {
	Name string
	run  runner
	env  []string // of a private instance's commands (nil: this process's)
}

// NewBridge returns a handle on bridge name (nothing is created yet).
func NewBridge(name string) *Bridge { return &Bridge{Name: name, run: execRunner} }

// Monitor watches the bridge's flow table (OpenFlow flow monitoring,
// ovs-ofctl monitor watch:) and signals on the returned channel, at most
// one pending signal, whenever a flow is added, modified or deleted, by
// anyone. The channel closes when ctx ends or the monitor stops (the
// bridge or the switch went away): watch again later.
func (b *Bridge) Monitor(ctx context.Context) (<-chan struct{}, error) {
	// ovs-ofctl prints the asynchronous events to its standard error,
	// unbuffered (the initial reply goes to standard output, buffered).
	cmd := exec.CommandContext(ctx, "ovs-ofctl", "--no-names", "-O", OFVersion, "monitor", b.Name, "watch:")
	cmd.Env = b.env
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("ovs-ofctl: %w", ErrNoOVS)
		}
		return nil, fmt.Errorf("monitor %s: %w", b.Name, err)
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		defer cmd.Wait()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "event=") {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, nil
}

// Available reports whether the OVS tools are installed and the database answers.
func Available(ctx context.Context) error {
	_, err := execRunner(ctx, nil, "ovs-vsctl", "--timeout=5", "show")
	return err
}

// Ensure creates the bridge if needed, on the userspace datapath, with
// fail_mode=secure (no flows means no forwarding, even with no controller)
// and OpenFlow 1.3-1.5 enabled.
func (b *Bridge) Ensure(ctx context.Context) error {
	_, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--may-exist", "add-br", b.Name,
		"--", "set", "bridge", b.Name, "datapath_type=netdev", "fail_mode=secure",
		"protocols=OpenFlow13,OpenFlow14,OpenFlow15")
	if err != nil {
		return fmt.Errorf("ensure bridge %s: %w", b.Name, err)
	}
	return nil
}

// Delete removes the bridge.
func (b *Bridge) Delete(ctx context.Context) error {
	if _, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", b.Name); err != nil {
		return fmt.Errorf("delete bridge %s: %w", b.Name, err)
	}
	return nil
}

// AddPort attaches interface name; ofport 0 lets OVS choose the number.
func (b *Bridge) AddPort(ctx context.Context, name string, ofport int) error {
	args := []string{"--timeout=10", "--may-exist", "add-port", b.Name, name}
	if ofport > 0 {
		args = append(args, "--", "set", "interface", name, "ofport_request="+strconv.Itoa(ofport))
	}
	if _, err := b.run(ctx, nil, "ovs-vsctl", args...); err != nil {
		return fmt.Errorf("add port %s: %w", name, err)
	}
	return nil
}

// EnsureTunnel adds VXLAN port name to the bridge, or sets it anew: it
// sends from local, with the key and the remote endpoint the flows set
// per packet (key=flow, remote_ip=flow), to UDP port 4789.
func (b *Bridge) EnsureTunnel(ctx context.Context, name string, local netip.Addr) error {
	if !local.IsValid() {
		return fmt.Errorf("tunnel %s: no local endpoint", name)
	}
	if _, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--may-exist", "add-port", b.Name, name,
		"--", "set", "interface", name, "type=vxlan", "options:key=flow", "options:remote_ip=flow",
		"options:local_ip="+local.String()); err != nil {
		return fmt.Errorf("tunnel %s: %w", name, err)
	}
	return nil
}

// DelPort detaches a port.
func (b *Bridge) DelPort(ctx context.Context, name string) error {
	if _, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--if-exists", "del-port", b.Name, name); err != nil {
		return fmt.Errorf("delete port %s: %w", name, err)
	}
	return nil
}

// Ports returns the OpenFlow numbers of the bridge's ports (not the bridge's
// own internal port). Ports OVS could not open (ofport -1) are left out.
// One ovs-vsctl call (one database transaction) answers both questions:
// every interface's number, and which interfaces are this bridge's.
func (b *Bridge) Ports(ctx context.Context) (flow.Ports, error) {
	out, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--format=json", "--columns=name,ofport", "find", "Interface",
		"--", "list-ifaces", b.Name)
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	return parsePorts(out)
}

// parsePorts reads the output of "find Interface" as JSON followed by
// "list-ifaces" as one name per line.
func parsePorts(out []byte) (flow.Ports, error) {
	var tab struct {
		Data [][]json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	if err := dec.Decode(&tab); err != nil {
		return nil, fmt.Errorf("list ports: bad ovs-vsctl json: %w", err)
	}
	mine := map[string]bool{}
	for _, n := range strings.Fields(string(out[dec.InputOffset():])) {
		mine[n] = true
	}
	ports := flow.Ports{}
	for _, row := range tab.Data {
		if len(row) != 2 {
			continue
		}
		var name string
		var no int64
		if json.Unmarshal(row[0], &name) != nil || json.Unmarshal(row[1], &no) != nil {
			continue // ofport is ["set",[]] while OVS is still adding the port
		}
		if mine[name] && no > 0 && no < 0xff00 {
			ports[name] = uint32(no)
		}
	}
	return ports, nil
}

// Replace makes the bridge's flow table exactly flows, atomically: one
// OpenFlow 1.4 bundle, so no packet ever sees a half-applied set.
func (b *Bridge) Replace(ctx context.Context, flows string) error {
	f, err := writeTemp(flows)
	if err != nil {
		return fmt.Errorf("replace flows: %w", err)
	}
	defer os.Remove(f)
	if _, err := b.run(ctx, nil, "ovs-ofctl", "--no-names", "-O", OFVersion, "--bundle", "replace-flows", b.Name, f); err != nil {
		return fmt.Errorf("replace flows: %w", err)
	}
	return nil
}

// Diff returns the differences between the bridge's flows and flows, in
// ovs-ofctl diff-flows form ("+" missing on the switch, "-" extra there);
// empty means in sync.
func (b *Bridge) Diff(ctx context.Context, flows string) (string, error) {
	f, err := writeTemp(flows)
	if err != nil {
		return "", fmt.Errorf("diff flows: %w", err)
	}
	defer os.Remove(f)
	out, err := b.run(ctx, nil, "ovs-ofctl", "--no-names", "-O", OFVersion, "diff-flows", b.Name, f)
	var ce *CmdError
	if errors.As(err, &ce) {
		var ee *exec.ExitError
		if errors.As(ce.Err, &ee) && ee.ExitCode() == 2 && ce.Stderr == "" {
			return string(out), nil // 2: they differ
		}
	}
	if err != nil {
		return "", fmt.Errorf("diff flows: %w", err)
	}
	return string(out), nil
}

// DumpFlows returns the bridge's flows as ovs-ofctl prints them.
func (b *Bridge) DumpFlows(ctx context.Context) (string, error) {
	out, err := b.run(ctx, nil, "ovs-ofctl", "--no-names", "-O", OFVersion, "--no-stats", "dump-flows", b.Name)
	if err != nil {
		return "", fmt.Errorf("dump flows: %w", err)
	}
	return string(out), nil
}

// DelFlows deletes flows matching spec (all when spec is empty); for tests
// and the drift demo.
func (b *Bridge) DelFlows(ctx context.Context, spec string) error {
	args := []string{"--no-names", "-O", OFVersion, "del-flows", b.Name}
	if spec != "" {
		args = append(args, spec)
	}
	if _, err := b.run(ctx, nil, "ovs-ofctl", args...); err != nil {
		return fmt.Errorf("delete flows: %w", err)
	}
	return nil
}

func writeTemp(s string) (string, error) {
	f, err := os.CreateTemp("", "secaas-flows-*.txt")
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}

// Trace is what ofproto/trace said about one packet.
type Trace struct {
	Dropped bool     // datapath actions are "drop"
	Out     []uint32 // OpenFlow ports the packet was output to
	Cookies []uint64 // cookies of the flows it matched, in order
	Raw     string
}

var (
	traceFlowRE = regexp.MustCompile(`^\s*\d+\. .*priority \d+(?:, cookie (0x[0-9a-f]+))?`)
	traceOutRE  = regexp.MustCompile(`^\s+output:(\d+)\s*$`)
)

// Trace asks the switch what it would do with the packet described by spec
// (ovs-ofctl flow syntax, e.g. "in_port=1,tcp,dl_src=...,tp_dst=22").
// ctNext, when set, is the conntrack state the trace assumes after a ct
// action (e.g. "trk,est").
func (b *Bridge) Trace(ctx context.Context, spec, ctNext string) (Trace, error) {
	args := []string{"ofproto/trace"}
	if ctNext != "" {
		args = append(args, "--ct-next", ctNext)
	}
	out, err := b.run(ctx, nil, "ovs-appctl", append(args, b.Name, spec)...)
	if err != nil {
		return Trace{}, fmt.Errorf("trace %s: %w", spec, err)
	}
	return ParseTrace(string(out))
}

// ParseTrace reads ofproto/trace output.
func ParseTrace(s string) (Trace, error) {
	t := Trace{Raw: s}
	lines := strings.Split(s, "\n")
	sawActions := false
	for i, l := range lines {
		if m := traceFlowRE.FindStringSubmatch(l); m != nil {
			if m[1] != "" {
				c, err := strconv.ParseUint(m[1][2:], 16, 64)
				if err == nil {
					t.Cookies = append(t.Cookies, c)
				}
			}
			continue
		}
		if m := traceOutRE.FindStringSubmatch(l); m != nil {
			if i+1 < len(lines) && strings.Contains(lines[i+1], "skipping output to input port") {
				continue
			}
			n, _ := strconv.ParseUint(m[1], 10, 32)
			t.Out = append(t.Out, uint32(n))
			continue
		}
		if rest, ok := strings.CutPrefix(l, "Datapath actions: "); ok {
			sawActions = true
			t.Dropped = strings.TrimSpace(rest) == "drop"
		}
	}
	if !sawActions {
		return t, fmt.Errorf("parse trace: no \"Datapath actions\" line")
	}
	return t, nil
}

// EnsureLearning creates a plain learning switch (fail_mode=standalone,
// NORMAL forwarding) on the userspace datapath. Labs use it to stand in for
// the physical network behind an uplink.
func (b *Bridge) EnsureLearning(ctx context.Context) error {
	_, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--may-exist", "add-br", b.Name,
		"--", "set", "bridge", b.Name, "datapath_type=netdev", "fail_mode=standalone")
	if err != nil {
		return fmt.Errorf("ensure bridge %s: %w", b.Name, err)
	}
	return nil
}

// AddPatch adds a patch port name whose peer is the patch port peer (on
// another bridge).
func (b *Bridge) AddPatch(ctx context.Context, name, peer string) error {
	_, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--may-exist", "add-port", b.Name, name,
		"--", "set", "interface", name, "type=patch", "options:peer="+peer)
	if err != nil {
		return fmt.Errorf("add patch %s: %w", name, err)
	}
	return nil
}

// SetAccessTag makes port an access port of VLAN tag (learning bridges).
func (b *Bridge) SetAccessTag(ctx context.Context, port string, tag int) error {
	if _, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "set", "port", port, "tag="+strconv.Itoa(tag)); err != nil {
		return fmt.Errorf("tag %s: %w", port, err)
	}
	return nil
}

// Modify deletes and adds flows (ovs-ofctl syntax, as Flow.String writes
// them) in one OpenFlow bundle: all or nothing. Deletions are strict
// (priority and match), and run before the additions.
func (b *Bridge) Modify(ctx context.Context, del, add []string) error {
	var buf strings.Builder
	for _, l := range del {
		buf.WriteString("flow delete_strict ")
		buf.WriteString(stripForDelete(l))
		buf.WriteByte('\n')
	}
	for _, l := range add {
		buf.WriteString("flow add ")
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	f, err := writeTemp(buf.String())
	if err != nil {
		return fmt.Errorf("modify flows: %w", err)
	}
	defer os.Remove(f)
	if _, err := b.run(ctx, nil, "ovs-ofctl", "--no-names", "-O", OFVersion, "bundle", b.Name, f); err != nil {
		return fmt.Errorf("modify flows: %w", err)
	}
	return nil
}

var cookieRE = regexp.MustCompile(`, cookie=0x[0-9a-f]+`)

// stripForDelete keeps what identifies a flow: table, priority and match.
func stripForDelete(l string) string {
	if i := strings.Index(l, " actions="); i >= 0 {
		l = l[:i]
	}
	return cookieRE.ReplaceAllString(l, "")
}

// FlowCount is the number of flows on the bridge (cheap: one aggregate
// statistics request).
func (b *Bridge) FlowCount(ctx context.Context) (int, error) {
	out, err := b.run(ctx, nil, "ovs-ofctl", "--no-names", "-O", OFVersion, "dump-aggregate", b.Name)
	if err != nil {
		return 0, fmt.Errorf("flow count: %w", err)
	}
	_, rest, ok := strings.Cut(string(out), "flow_count=")
	if !ok {
		return 0, fmt.Errorf("flow count: unexpected reply %q", out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil {
		return 0, fmt.Errorf("flow count: unexpected reply %q", out)
	}
	return n, nil
}

// AddMirror copies every frame to and from port to the port out (which must
// be on the bridge), as mirror name. An existing mirror of that name is
// replaced.
func (b *Bridge) AddMirror(ctx context.Context, name, port, out string) error {
	b.DelMirror(ctx, name)
	_, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10",
		"--", "--id=@p", "get", "port", port,
		"--", "--id=@o", "get", "port", out,
		"--", "--id=@m", "create", "mirror", "name="+name, "select-dst-port=@p", "select-src-port=@p", "output-port=@o",
		"--", "add", "bridge", b.Name, "mirrors", "@m")
	if err != nil {
		return fmt.Errorf("add mirror %s: %w", name, err)
	}
	return nil
}

// DelMirror removes mirror name if it exists.
func (b *Bridge) DelMirror(ctx context.Context, name string) error {
	out, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "--bare", "--columns=_uuid", "find", "mirror", "name="+name)
	if err != nil {
		return fmt.Errorf("delete mirror %s: %w", name, err)
	}
	for _, id := range strings.Fields(string(out)) {
		if _, err := b.run(ctx, nil, "ovs-vsctl", "--timeout=10", "remove", "bridge", b.Name, "mirrors", id); err != nil {
			return fmt.Errorf("delete mirror %s: %w", name, err)
		}
	}
	return nil
}
