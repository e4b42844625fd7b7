package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"secaas/internal/agent"
	"secaas/internal/controller"
	"secaas/internal/daemon"
	"secaas/internal/inventory"
	"secaas/internal/ovs"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

// ControlPlaneOptions configure secaas bench controlplane.
type ControlPlaneOptions struct {
	Tenants int           // one domain each (default 10)
	VMs     int           // per tenant (default 100): Tenants x VMs switch ports over the two hosts
	ACRs    int           // in all (default 10,000)
	Changes int           // ACR additions timed (default 200)
	ReadFor time.Duration // how long API reads are driven (default 3s)
	Readers int           // concurrent API readers (default 4)
	Events  int           // events an agent reports in one burst (default 20,000)
	// CPUProfile, when set, receives a CPU profile of the timed changes.
	CPUProfile io.Writer
	Progress   io.Writer
}

func (o *ControlPlaneOptions) defaults() error {
	for _, f := range []struct {
		v   *int
		def int
	}{{&o.Tenants, 10}, {&o.VMs, 100}, {&o.ACRs, 10_000}, {&o.Changes, 200}, {&o.Readers, 4}, {&o.Events, 20_000}} {
		if *f.v < 0 {
			return errors.New("counts must not be negative")
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if o.ReadFor <= 0 {
		o.ReadFor = 3 * time.Second
	}
	if o.VMs < 2 || o.VMs > 4000 || o.Tenants > 200 {
		return errors.New("2-4000 VMs per tenant, at most 200 tenants")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// ControlPlaneResult is what secaas bench controlplane measured.
type ControlPlaneResult struct {
	Tenants, VMs, ACRs, Hosts int
	Flows                     []int // per host, after the set-up
	Bus                       string
	// Change to enforced: an ACR added through the API until the host's
	// agent reports its switch holds it (the API's default wait).
	Changes   int
	ChangeP50 time.Duration `json:"change_p50_ns"`
	ChangeP99 time.Duration `json:"change_p99_ns"`
	ChangeMax time.Duration `json:"change_max_ns"`
	// Checked on the switch: sampled changes whose flows were there when
	// the API answered.
	Verified, VerifiedOK int
	// API throughput.
	Reads       int
	ReadsPerSec float64
	ReadBytes   int // of one read (a domain document)
	Writes      int
	WritesPerS  float64 `json:"writes_per_sec"`
	// Events an agent reported in one burst, stored by the controller.
	Events        int
	EventsStored  int
	EventsPerSec  float64
	EventsElapsed time.Duration `json:"events_elapsed_ns"`
	Setup         time.Duration `json:"setup_ns"`
}

// cpDomain is tenant i's domain: vms VMs in 4 subnets on ports
// "<prefix><i>v<k>", and acrs rules between them.
func cpDomain(i, vms, acrs int, prefix string) tenant.Domain {
	tid := 1000 + i
	d := tenant.Domain{TID: tid, Name: fmt.Sprintf("t%d", i), Tenant: fmt.Sprintf("t%d", i), Mode: tenant.Stateful}
	var names []string
	for s := 0; s < 4; s++ {
		d.Subnets = append(d.Subnets, tenant.Subnet{Name: fmt.Sprintf("s%d", s)})
	}
	for k := 0; k < vms; k++ {
		name := fmt.Sprintf("vm%d", k)
		names = append(names, name)
		s := &d.Subnets[k%4]
		s.VMs = append(s.VMs, tenant.VM{Name: name, MAC: fmt.Sprintf("02:%02x:%02x:00:%02x:%02x", (tid>>8)&0xff, tid&0xff, k>>8, k&0xff),
			IP: fmt.Sprintf("10.%d.%d.%d", i, (k+1)>>8, (k+1)&0xff), Port: fmt.Sprintf("%s%dv%d", prefix, i, k)})
	}
	for k := 0; k < acrs; k++ {
		a := tenant.ACR{Priority: 1 + k%1000, Action: tenant.Pass, Proto: "tcp",
			SrcMAC: []string{names[k%len(names)]}, DstMAC: []string{names[(k*7+1)%len(names)]},
			DstPort: tenant.PortRange{Lo: uint16(1 + k%60000), Hi: uint16(1 + k%60000)}}
		if k%7 == 0 {
			a.Action = tenant.Drop
		}
		d.Subnets[k%4].ACRs = append(d.Subnets[k%4].ACRs, a)
	}
	return d
}

// addInternalPorts puts internal ports on br, many per ovs-vsctl call.
func addInternalPorts(ctx context.Context, br string, ports []string) error {
	for len(ports) > 0 {
		n := min(len(ports), 100)
		var args []string
		for _, p := range ports[:n] {
			args = append(args, "--", "--may-exist", "add-port", br, p, "--", "set", "interface", p, "type=internal")
		}
		if out, err := exec.CommandContext(ctx, "ovs-vsctl", append([]string{"--timeout=60"}, args...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("add ports to %s: %v: %s", br, err, out)
		}
		ports = ports[n:]
	}
	return nil
}

// RunControlPlane builds one controller (embedded NATS JetStream on
// loopback) and two agents, each on its own bridge with internal ports
// for its VMs, loads Tenants domains (placed alternately on the two
// hosts) with ACRs rules in all, and measures change-to-enforced latency,
// API read and write throughput, and events carried with zero loss.
func RunControlPlane(ctx context.Context, o ControlPlaneOptions) (*ControlPlaneResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	say := func(format string, a ...any) {
		fmt.Fprintf(o.Progress, "[%6.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, a...))
	}
	dir, err := os.MkdirTemp("", "secaas-bench-cp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	const admin = "bench-cp-admin-token-0123456789"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	roots := func(c daemon.Config) daemon.Config {
		c.ImageRoot, c.RunRoot, c.ShmRoot = filepath.Join(dir, "images"), filepath.Join(dir, "run"), filepath.Join(dir, "shm")
		c.BusToken, c.Log = "bench-cp-bus-token-0123456789", quiet
		return c
	}
	ctl, err := daemon.New(ctx, roots(daemon.Config{Role: daemon.RoleController, Node: "hv0", DB: filepath.Join(dir, "ctl", "s.db"),
		AdminToken: admin, BusListen: "127.0.0.1:0"}))
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	res := &ControlPlaneResult{Tenants: o.Tenants, VMs: o.Tenants * o.VMs, ACRs: o.ACRs, Hosts: 2, Bus: "NATS JetStream (embedded, loopback)"}
	hosts := []string{"hv0", "hv1"}
	var bridges []*ovs.Bridge
	var agents []*daemon.Daemon
	defer func() {
		for _, a := range agents {
			a.Close()
		}
		for _, br := range bridges {
			exec.Command("ovs-vsctl", "--if-exists", "del-br", br.Name).Run()
		}
	}()
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	for i, h := range hosts {
		br := ovs.NewBridge(fmt.Sprintf("scbcp%d", i))
		exec.Command("ovs-vsctl", "--if-exists", "del-br", br.Name).Run()
		bridges = append(bridges, br)
		a, err := daemon.New(ctx, roots(daemon.Config{Role: daemon.RoleAgent, Node: h, Bridge: br, BusURL: ctl.BusURL, DataDir: filepath.Join(dir, h)}))
		if err != nil {
			return nil, err
		}
		agents = append(agents, a)
		go a.Run(runCtx, 10*time.Second)
	}
	c := ctl.Controller
	who := controller.Caller{Admin: true}
	domains := make([]tenant.Domain, o.Tenants)
	perDomain := o.ACRs / o.Tenants
	for i := range domains {
		domains[i] = cpDomain(i, o.VMs, perDomain+min(1, max(0, o.ACRs%o.Tenants-i)), fmt.Sprintf("c%d", i%2))
		d := domains[i]
		if _, _, err := c.CreateTenant(ctx, who, d.Tenant, ""); err != nil {
			return nil, err
		}
		var ports []string
		for _, s := range d.Subnets {
			for _, vm := range s.VMs {
				ports = append(ports, vm.Port)
				if _, err := c.PutPort(controller.WithWait(ctx, 0), who, inventory.Port{Name: vm.Port, Tenant: d.Tenant, Host: hosts[i%2]}); err != nil && !errors.Is(err, controller.ErrPending) {
					return nil, err
				}
			}
		}
		if err := addInternalPorts(ctx, bridges[i%2].Name, ports); err != nil {
			return nil, err
		}
		say("tenant %d/%d: %d ports on %s", i+1, o.Tenants, len(ports), hosts[i%2])
	}
	srv := httptest.NewServer(ctl.API)
	defer srv.Close()
	client := srv.Client()
	call := func(method, path string, body any, out any) (int, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
		}
		if out != nil {
			return resp.StatusCode, json.Unmarshal(b, out)
		}
		return len(b), nil
	}
	for i, d := range domains {
		if _, err := call("POST", "/v1/domains?wait=2m", d, nil); err != nil {
			return nil, err
		}
		say("domain %d/%d created through the API and applied on %s", i+1, o.Tenants, hosts[i%2])
	}
	for _, br := range bridges {
		dump, err := br.DumpFlows(ctx)
		if err != nil {
			return nil, err
		}
		res.Flows = append(res.Flows, strings.Count(dump, "\n"))
	}
	res.Setup = time.Since(t0)

	// Change to enforced.
	var lat []time.Duration
	if o.CPUProfile != nil {
		if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
			return nil, err
		}
	}
	tc := time.Now()
	for k := 0; k < o.Changes; k++ {
		i := k % o.Tenants
		d := domains[i]
		vm := d.Subnets[0].VMs[k%len(d.Subnets[0].VMs)].Name
		acr := map[string]any{"subnet": "s0", "priority": 1001 + k%500, "srcmac": []string{vm}, "proto": "udp",
			"dstport": fmt.Sprint(20000 + k), "action": "pass", "id": fmt.Sprintf("bench-%d", k)}
		s := time.Now()
		if _, err := call("POST", fmt.Sprintf("/v1/domains/%d/acrs", d.TID), acr, nil); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(s))
		if k%20 == 0 { // is it on the switch now?
			res.Verified++
			dump, err := bridges[i%2].DumpFlows(ctx)
			if err == nil && strings.Contains(dump, fmt.Sprintf("tp_dst=%d", 20000+k)) {
				res.VerifiedOK++
			}
		}
		if (k+1)%50 == 0 || k+1 == o.Changes {
			el := time.Since(tc)
			say("change %d/%d (elapsed %s, about %s left)", k+1, o.Changes, el.Round(time.Second),
				(el / time.Duration(k+1) * time.Duration(o.Changes-k-1)).Round(time.Second))
		}
	}
	if o.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	res.Changes = len(lat)
	res.Writes = len(lat)
	res.WritesPerS = float64(len(lat)) / time.Since(tc).Seconds()
	slices.Sort(lat)
	res.ChangeP50, res.ChangeP99, res.ChangeMax = quantileD(lat, 0.5), quantileD(lat, 0.99), lat[len(lat)-1]

	// API reads.
	say("API reads: %d readers for %s", o.Readers, o.ReadFor)
	var reads atomic.Int64
	var readErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(o.ReadFor)
	tr := time.Now()
	for r := 0; r < o.Readers; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			for k := r; time.Now().Before(deadline); k++ {
				n, err := call("GET", fmt.Sprintf("/v1/domains/%d", domains[k%o.Tenants].TID), nil, nil)
				if err != nil {
					once.Do(func() { readErr = err })
					return
				}
				res.ReadBytes = n
				reads.Add(1)
			}
		}(r)
	}
	wg.Wait()
	if readErr != nil {
		return nil, readErr
	}
	res.Reads = int(reads.Load())
	res.ReadsPerSec = float64(res.Reads) / time.Since(tr).Seconds()

	// Events: one agent reports a burst; count them in the store.
	say("events: %d in one burst from %s", o.Events, hosts[0])
	te := time.Now()
	for k := 0; k < o.Events; k++ {
		agents[0].Report(agent.Event{Kind: "bench.event", Detail: fmt.Sprint(k)})
	}
	for {
		var n int
		if err := ctl.Store.View(ctx, func(tx *store.Tx) (err error) {
			n, err = tx.CountEvents("bench.event")
			return err
		}); err != nil {
			return nil, err
		}
		res.EventsStored = n
		if n >= o.Events || time.Since(te) > 5*time.Minute {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Events = o.Events
	res.EventsElapsed = time.Since(te)
	res.EventsPerSec = float64(res.EventsStored) / res.EventsElapsed.Seconds()
	say("done")
	return res, nil
}

func quantileD(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// WriteControlPlane prints the result as a Markdown table beside the
// issue's goals.
func WriteControlPlane(w io.Writer, r *ControlPlaneResult) {
	fmt.Fprintf(w, "### Control plane (secaas bench controlplane)\n\nOne controller and %d agents, all in this one process on this machine (each agent with its own Open vSwitch bridge and internal ports for its VMs), over %s; %d tenants, %d VMs (switch ports), %d ACRs; flows per host after set-up: %v; set-up %s.\n\n",
		r.Hosts, r.Bus, r.Tenants, r.VMs, r.ACRs, r.Flows, r.Setup.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| measure\t ours\t goal (issue 18)\t")
	fmt.Fprintln(tw, "|---\t---\t---\t")
	fmt.Fprintf(tw, "| change to enforced, p50 (%d ACR additions through the API)\t %s\t -\t\n", r.Changes, r.ChangeP50.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "| change to enforced, p99\t %s\t <= 1 s\t\n", r.ChangeP99.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "| change to enforced, max\t %s\t -\t\n", r.ChangeMax.Round(100*time.Microsecond))
	fmt.Fprintf(tw, "| changes found on the switch when the API answered (sampled)\t %d of %d\t all\t\n", r.VerifiedOK, r.Verified)
	fmt.Fprintf(tw, "| API writes (one after another, each waiting for its host)\t %.0f/s\t -\t\n", r.WritesPerS)
	fmt.Fprintf(tw, "| API reads (GET a domain, %d KiB)\t %.0f/s\t >= 2,000/s\t\n", r.ReadBytes/1024, r.ReadsPerSec)
	fmt.Fprintf(tw, "| events carried (one burst of %d)\t %.0f/s, %d lost\t >= 20,000/s, 0 lost\t\n", r.Events, r.EventsPerSec, r.Events-r.EventsStored)
	tw.Flush()
}
