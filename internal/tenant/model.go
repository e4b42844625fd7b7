package tenant

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Limits of the model.
const (
	MinTID      = 1     // 802.1Q VLAN IDs 1..4094
	MaxTID      = 4094  //
	MaxPriority = 65535 // ACR priority range is 0..MaxPriority
	// MaxSubnets per domain: a subnet is one bit of a 32-bit register in
	// the flow pipeline.
	MaxSubnets = 32
	// MaxRulesPerDomain bounds a domain's ACRs so that each can get a
	// distinct OpenFlow priority.
	MaxRulesPerDomain = 50000
	// MaxRulesPerPerimeter bounds the rules on one subnet perimeter so that
	// each can get a distinct OpenFlow priority.
	MaxRulesPerPerimeter = 50000
)

// Mode selects how replies are treated.
type Mode string

// Modes.
const (
	Stateless Mode = "stateless" // the paper's: replies need explicit reverse rules
	Stateful  Mode = "stateful"  // conntrack: replies of passed connections pass
)

// Action is what an ACR does with matching traffic.
type Action string

// Actions.
const (
	Pass Action = "pass"
	Drop Action = "drop"
)

// Domain is a tenant domain TD = (TID, TNet, VMs, ACRs, Cons).
type Domain struct {
	TID    int    `json:"tid" yaml:"tid"`
	Name   string `json:"name" yaml:"name"`
	Tenant string `json:"tenant,omitempty" yaml:"tenant,omitempty"`
	Mode   Mode   `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Uplinks are switch ports that lead outside the domain (a router, a
	// physical NIC). Traffic on them carries the TID as its 802.1Q tag.
	Uplinks []string `json:"uplinks,omitempty" yaml:"uplinks,omitempty"`
	Subnets []Subnet `json:"subnets" yaml:"subnets"`
	// Revision is the store's version of the domain (read only; 0 in a
	// policy file): a change that names a revision (the body's, or the
	// API's If-Match) applies only to that revision.
	Revision int `json:"revision,omitempty" yaml:"revision,omitempty"`
}

// Subnet is a TSNet: a Layer 2 broadcast domain with its VMs and its
// perimeter rule set ACR_i.
type Subnet struct {
	Name string `json:"name" yaml:"name"`
	CIDR string `json:"cidr,omitempty" yaml:"cidr,omitempty"`
	VMs  []VM   `json:"vms,omitempty" yaml:"vms,omitempty"`
	ACRs []ACR  `json:"acrs,omitempty" yaml:"acrs,omitempty"`
}

// VM is a tenant virtual machine attached to a switch port.
type VM struct {
	UUID string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	Name string `json:"name" yaml:"name"`
	MAC  string `json:"mac" yaml:"mac"`
	IP   string `json:"ip" yaml:"ip"`
	Port string `json:"port" yaml:"port"`
	// NAD, when set, monitors the VM's traffic for anomalies (agentless:
	// an OVS mirror of its port).
	NAD *NADPolicy `json:"nad,omitempty" yaml:"nad,omitempty"`
	// VMI, when set, monitors the VM's memory from the host (agentless:
	// the guest's RAM file).
	VMI *VMIPolicy `json:"vmi,omitempty" yaml:"vmi,omitempty"`
	// AV, when set, scans files of the VM's disk from the host (HyperAV).
	AV *AVPolicy `json:"av,omitempty" yaml:"av,omitempty"`
	// KMon, when set, monitors the VM's syscalls by code injected into
	// its kernel (agentless: through its gdbstub and RAM file).
	KMon *KMonPolicy `json:"kmon,omitempty" yaml:"kmon,omitempty"`
}

// KMonPolicy is syscall monitoring for one VM: the paper's policies
// P = (VM, syscalls, (subject, object), response), the VM being the one
// that holds the policy.
type KMonPolicy struct {
	Rules []KMonRule `json:"rules" yaml:"rules"`
}

// KMonRule: the syscalls (x86-64 numbers) made by a process whose name
// (comm) is Subject on the file Object (open's and openat's path; empty:
// any) are recorded, or fail with EPERM in the guest (Action "record" or
// "block").
type KMonRule struct {
	Syscalls []int  `json:"syscalls" yaml:"syscalls"`
	Subject  string `json:"subject" yaml:"subject"`
	Object   string `json:"object,omitempty" yaml:"object,omitempty"`
	Action   string `json:"action" yaml:"action"`
}

// Limits of a KMon policy (the injected monitor's tables).
const (
	MaxKMonRules   = 8
	MaxKMonSyscall = 511
	MaxKMonSubject = 15  // a task's comm
	MaxKMonObject  = 127 // bytes of a path
	kmonRecord     = "record"
	kmonBlock      = "block"
)

// Validate checks the policy against the monitor's limits.
func (p KMonPolicy) Validate() error {
	if len(p.Rules) == 0 || len(p.Rules) > MaxKMonRules {
		return fmt.Errorf("kmon: 1-%d rules, not %d", MaxKMonRules, len(p.Rules))
	}
	for i, r := range p.Rules {
		if r.Action != kmonRecord && r.Action != kmonBlock {
			return fmt.Errorf("kmon rule %d: action %q is neither record nor block", i, r.Action)
		}
		if r.Subject == "" || len(r.Subject) > MaxKMonSubject || strings.ContainsRune(r.Subject, 0) {
			return fmt.Errorf("kmon rule %d: subject %q must be a process name of 1-%d bytes", i, r.Subject, MaxKMonSubject)
		}
		if len(r.Object) > MaxKMonObject || strings.ContainsRune(r.Object, 0) || r.Object != "" && !strings.HasPrefix(r.Object, "/") {
			return fmt.Errorf("kmon rule %d: object must be an absolute path of at most %d bytes", i, MaxKMonObject)
		}
		if len(r.Syscalls) == 0 {
			return fmt.Errorf("kmon rule %d: no syscalls", i)
		}
		for _, nr := range r.Syscalls {
			if nr < 0 || nr > MaxKMonSyscall {
				return fmt.Errorf("kmon rule %d: syscall %d is outside 0..%d", i, nr, MaxKMonSyscall)
			}
		}
	}
	return nil
}

// AVPolicy configures HyperAV for one VM's disk: what to scan and how to
// judge it. How the disk is reached on the host (image, mode, sockets) is
// host inventory (package inventory), never a tenant's to name.
type AVPolicy struct {
	// Paths are files scanned on every round (their writes trigger a rescan).
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty"`
	// Schedule between rounds, default 30s.
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// Partition holding the ext4 file system (0: find it).
	Partition int `json:"partition,omitempty" yaml:"partition,omitempty"`
	// Policy combining engines: any (default) or majority.
	Policy string `json:"policy,omitempty" yaml:"policy,omitempty"`
	// Engines to run: clamd (signatures and YARA rules), hashlist (the
	// node's SHA-256 list, secaasd --hashes); default: every engine the
	// node has.
	Engines []string `json:"engines,omitempty" yaml:"engines,omitempty"`

	// Host fields of earlier versions, refused with a message that says
	// where they went (the host inventory).
	Mode      string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Disk      string `json:"disk,omitempty" yaml:"disk,omitempty"`
	QMP       string `json:"qmp,omitempty" yaml:"qmp,omitempty"`
	Node      string `json:"node,omitempty" yaml:"node,omitempty"`
	Device    string `json:"device,omitempty" yaml:"device,omitempty"`
	Socket    string `json:"socket,omitempty" yaml:"socket,omitempty"`
	Transport string `json:"transport,omitempty" yaml:"transport,omitempty"`
	Cache     string `json:"cache,omitempty" yaml:"cache,omitempty"`
	GuestPort string `json:"guest_port,omitempty" yaml:"guest_port,omitempty"`
}

// hostFields names the host fields set in p.
func (p AVPolicy) hostFields() []string {
	var out []string
	for _, f := range [][2]string{{"mode", p.Mode}, {"disk", p.Disk}, {"qmp", p.QMP}, {"node", p.Node}, {"device", p.Device},
		{"socket", p.Socket}, {"transport", p.Transport}, {"cache", p.Cache}, {"guest_port", p.GuestPort}} {
		if f[1] != "" {
			out = append(out, f[0])
		}
	}
	return out
}

// hostFieldMsg ends the error for a tenant policy that names a host resource.
const hostFieldMsg = "is host inventory, set by the admin for the VM's port (secaas inventory set), not part of a tenant's policy"

// AVEngines are the engine names a policy may ask for.
var AVEngines = []string{"clamd", "hashlist"}

// Limits of an AV policy.
const (
	MinAVSchedule = 100 * time.Millisecond
	MaxAVSchedule = 24 * time.Hour
	MaxAVPaths    = 1000
)

// Params checks the policy and returns its schedule.
func (p AVPolicy) Params() (time.Duration, error) {
	if hf := p.hostFields(); len(hf) > 0 {
		return 0, fmt.Errorf("av %s %s", strings.Join(hf, ", "), hostFieldMsg)
	}
	abs := func(what, v string) error {
		if v == "" || !strings.HasPrefix(v, "/") || strings.Contains(v, "..") {
			return fmt.Errorf("av %s %q must be an absolute path", what, v)
		}
		return nil
	}
	if len(p.Paths) > MaxAVPaths {
		return 0, fmt.Errorf("av: %d paths (limit %d)", len(p.Paths), MaxAVPaths)
	}
	for _, path := range p.Paths {
		if err := abs("path", path); err != nil {
			return 0, err
		}
	}
	if p.Partition < 0 || p.Partition > 128 {
		return 0, fmt.Errorf("av partition %d", p.Partition)
	}
	switch p.Policy {
	case "", "any", "majority":
	default:
		return 0, fmt.Errorf("av policy %q is neither any nor majority", p.Policy)
	}
	for _, e := range p.Engines {
		if !slices.Contains(AVEngines, e) {
			return 0, fmt.Errorf("av engine %q is not one of %s", e, strings.Join(AVEngines, ", "))
		}
	}
	every := 30 * time.Second
	if p.Schedule != "" {
		d, err := time.ParseDuration(p.Schedule)
		if err != nil || d < MinAVSchedule || d > MaxAVSchedule {
			return 0, fmt.Errorf("av schedule %q must be a duration in %s..%s", p.Schedule, MinAVSchedule, MaxAVSchedule)
		}
		every = d
	}
	return every, nil
}

// VMIPolicy configures memory monitoring for one VM. The guest's RAM file
// is host inventory (package inventory), never a tenant's to name.
type VMIPolicy struct {
	// Memory is refused: a field of earlier versions (the RAM file), now
	// the host inventory's.
	Memory string `json:"memory,omitempty" yaml:"memory,omitempty"`
	// Interval between monitoring cycles, default 10s.
	Interval string `json:"interval,omitempty" yaml:"interval,omitempty"`
	// Indicators to collect: processes, hidden_processes, modules,
	// hidden_modules, files, sockets, integrity (default: all).
	Indicators []string `json:"indicators,omitempty" yaml:"indicators,omitempty"`
}

// Limits and values of a VMI policy.
const (
	MinVMIInterval = 100 * time.Millisecond
	MaxVMIInterval = 24 * time.Hour
)

// VMIIndicators are the indicators a VMI policy may ask for.
var VMIIndicators = []string{"processes", "hidden_processes", "modules", "hidden_modules", "files", "sockets", "integrity"}

// Params returns the policy's interval and indicator set with defaults
// filled in, or an error.
func (p VMIPolicy) Params() (interval time.Duration, indicators map[string]bool, err error) {
	if p.Memory != "" {
		return 0, nil, fmt.Errorf("vmi memory %s", hostFieldMsg)
	}
	interval = 10 * time.Second
	if p.Interval != "" {
		if interval, err = time.ParseDuration(p.Interval); err != nil || interval < MinVMIInterval || interval > MaxVMIInterval {
			return 0, nil, fmt.Errorf("vmi interval %q must be a duration in %s..%s", p.Interval, MinVMIInterval, MaxVMIInterval)
		}
	}
	indicators = map[string]bool{}
	for _, i := range p.Indicators {
		if !slices.Contains(VMIIndicators, i) {
			return 0, nil, fmt.Errorf("vmi indicator %q is not one of %s", i, strings.Join(VMIIndicators, ", "))
		}
		indicators[i] = true
	}
	if len(indicators) == 0 {
		for _, i := range VMIIndicators {
			indicators[i] = true
		}
	}
	return interval, indicators, nil
}

// NADPolicy configures anomaly detection for one VM.
type NADPolicy struct {
	Window   string `json:"window,omitempty" yaml:"window,omitempty"`     // window length, default 60s
	History  int    `json:"history,omitempty" yaml:"history,omitempty"`   // windows in the profile, default 120
	Detector string `json:"detector,omitempty" yaml:"detector,omitempty"` // a registered detector (secaas nad detectors), default normalized
	// Model names a trained model in the node's model directory (secaasd
	// --nad-models), for the detectors that need one (lstm, lstm-unsup).
	Model string `json:"model,omitempty" yaml:"model,omitempty"`
}

var (
	detectorName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	modelName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// Limits of a NAD policy.
const (
	MinNADWindow  = 100 * time.Millisecond
	MaxNADWindow  = time.Hour
	MinNADHistory = 10
	MaxNADHistory = 10000
)

// Params returns the policy's values with defaults filled in, or an error.
func (p NADPolicy) Params() (window time.Duration, history int, detector string, err error) {
	window, history, detector = time.Minute, 120, "normalized"
	if p.Window != "" {
		if window, err = time.ParseDuration(p.Window); err != nil || window < MinNADWindow || window > MaxNADWindow {
			return 0, 0, "", fmt.Errorf("nad window %q must be a duration in %s..%s", p.Window, MinNADWindow, MaxNADWindow)
		}
	}
	if p.History != 0 {
		if p.History < MinNADHistory || p.History > MaxNADHistory {
			return 0, 0, "", fmt.Errorf("nad history %d must be in %d..%d", p.History, MinNADHistory, MaxNADHistory)
		}
		history = p.History
	}
	if p.Detector != "" {
		if !detectorName.MatchString(p.Detector) {
			return 0, 0, "", fmt.Errorf("nad detector %q is not a detector name", p.Detector)
		}
		detector = p.Detector
	}
	if p.Model != "" && !modelName.MatchString(p.Model) {
		return 0, 0, "", fmt.Errorf("nad model %q: a model is named by a file name in the node's model directory (letters, digits, '.', '_', '-')", p.Model)
	}
	return window, history, detector, nil
}

// ACR is a communication access control rule.
type ACR struct {
	ID       string    `json:"id,omitempty" yaml:"id,omitempty"`
	Priority int       `json:"priority" yaml:"priority"`
	SrcMAC   []string  `json:"srcmac,omitempty" yaml:"srcmac,omitempty"`
	DstMAC   []string  `json:"dstmac,omitempty" yaml:"dstmac,omitempty"`
	SrcIP    []string  `json:"srcip,omitempty" yaml:"srcip,omitempty"`
	DstIP    []string  `json:"dstip,omitempty" yaml:"dstip,omitempty"`
	Proto    string    `json:"proto,omitempty" yaml:"proto,omitempty"`
	SrcPort  PortRange `json:"srcport,omitzero" yaml:"srcport,omitempty"`
	DstPort  PortRange `json:"dstport,omitzero" yaml:"dstport,omitempty"`
	Action   Action    `json:"action" yaml:"action"`
}

// PortRange is an inclusive transport port range; the zero value means any.
// It is written as a number (22) or a string ("1000-2000").
type PortRange struct {
	Lo, Hi uint16
}

// Any reports whether r matches every port.
func (r PortRange) Any() bool { return r.Lo == 0 && r.Hi == 0 || r.Lo == 0 && r.Hi == 0xffff }

// Contains reports whether port p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Any() || p >= r.Lo && p <= r.Hi }

// IsZero reports whether r is unset.
func (r PortRange) IsZero() bool { return r.Lo == 0 && r.Hi == 0 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// ParsePortRange parses "22", "1000-2000" or "" (any).
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "*" || s == "any" {
		return PortRange{}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		if a == 0 {
			return PortRange{}, fmt.Errorf("port 0 is not a port")
		}
		return PortRange{a, a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if a > b {
		return PortRange{}, fmt.Errorf("port range %q is reversed", s)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a number in 0..65535", s)
	}
	return uint16(n), nil
}

// MarshalJSON writes a single port as a number and a range as a string.
func (r PortRange) MarshalJSON() ([]byte, error) {
	if r.Lo == r.Hi {
		return []byte(strconv.Itoa(int(r.Lo))), nil
	}
	return json.Marshal(r.String())
}

// UnmarshalJSON accepts a number or a string.
func (r *PortRange) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	if s == "null" {
		*r = PortRange{}
		return nil
	}
	v, err := ParsePortRange(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes the range like MarshalJSON.
func (r PortRange) MarshalYAML() (any, error) {
	if r.Lo == r.Hi {
		return int(r.Lo), nil
	}
	return r.String(), nil
}

// UnmarshalYAML accepts a number or a string.
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: port must be a number or a range like 1000-2000", n.Line)
	}
	v, err := ParsePortRange(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}
