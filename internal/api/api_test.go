package api

import (
	"bufio"
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
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/controller"
	"secaas/internal/hyperav"
	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

const admin = "admin-token-0123456789"

// fakeNode is a one-host fleet: it records the desired states it is
// given, applies or refuses them at once, and reports the status to the
// controller, like an agent would.
type fakeNode struct {
	mu      sync.Mutex
	applied [][]tenant.Domain
	inv     []inventory.Ports
	fail    bool
	silent  bool  // takes desired states without answering
	gen     int64 // the generation enforced
	sink    node.Sink
	// av answers HyperAV calls (nil: this host does not run HyperAV).
	av func(c node.Call) (json.RawMessage, error)
}

func (f *fakeNode) Publish(ctx context.Context, d node.Desired) error {
	f.mu.Lock()
	if f.silent {
		f.mu.Unlock()
		return nil
	}
	st := node.Status{Host: d.Host, Generation: d.Generation, Time: time.Now()}
	if f.fail {
		st.Applied, st.Error = f.gen, "switch said no"
		for _, dom := range d.Domains {
			st.Objects = append(st.Objects, node.ObjectStatus{Kind: "domain", ID: fmt.Sprint(dom.TID), Revision: dom.Revision, State: node.Failed, Message: st.Error})
		}
	} else {
		f.applied = append(f.applied, d.Domains)
		f.inv = append(f.inv, d.Ports)
		f.gen, st.Applied = d.Generation, d.Generation
		for _, dom := range d.Domains {
			st.Objects = append(st.Objects, node.ObjectStatus{Kind: "domain", ID: fmt.Sprint(dom.TID), Revision: dom.Revision, State: node.Applied})
		}
	}
	sink := f.sink
	f.mu.Unlock()
	return sink.Status(ctx, st)
}

func (f *fakeNode) Call(_ context.Context, host string, c node.Call) (json.RawMessage, error) {
	f.mu.Lock()
	silent := f.silent
	f.mu.Unlock()
	if silent {
		return nil, fmt.Errorf("host %s: %w", host, node.ErrUnreachable)
	}
	if c.Op == node.OpPlan {
		return json.Marshal(node.Plan{Removed: []string{}, Added: []string{"a flow"}})
	}
	if f.av == nil {
		return nil, errors.New("this host does not run HyperAV")
	}
	return f.av(c)
}

type env struct {
	t    *testing.T
	srv  *httptest.Server
	node *fakeNode
	ctl  *controller.Controller
}

func newEnv(t *testing.T) *env { return newEnvWith(t, &fakeNode{}) }

func newEnvWith(t *testing.T, n *fakeNode) *env {
	t.Helper()
	st, err := store.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := controller.New(st, n, admin, log)
	if err != nil {
		t.Fatal(err)
	}
	c.Host = testHost
	n.sink = c.Sink()
	srv := httptest.NewServer(New(c, log))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, ctl: c, node: n}
}

// result stores a result as a host would report it.
func (e *env) result(r node.Result) {
	e.t.Helper()
	if err := e.ctl.Sink().Result(context.Background(), r); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) do(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (e *env) tenant(id string) string {
	code, body := e.do("POST", "/v1/tenants", admin, map[string]string{"id": id})
	if code != 201 {
		e.t.Fatalf("create tenant: %d %s", code, body)
	}
	var r struct{ Token string }
	json.Unmarshal(body, &r)
	return r.Token
}

// testHost is the host the controller checks inventory records against.
var testHost = inventory.Host{Reserved: []string{"br0"}, Roots: []string{"/srv/images", "/run/secaas", "/dev/shm"}}

// owner creates a tenant and leases it Table 2's ports (vm1..vm3); VM3's
// port has a RAM file and a disk in the inventory.
func (e *env) owner(id string) string {
	tok := e.tenant(id)
	for _, p := range []inventory.Port{{Name: "vm1", Tenant: id}, {Name: "vm2", Tenant: id},
		{Name: "vm3", Tenant: id, Memory: "/dev/shm/g3", GDB: "/run/secaas/vm3.gdb", Disk: &inventory.Disk{Image: "/srv/images/vm3.raw", Mode: "front", Socket: "/run/secaas/vm3.sock"}}} {
		if code, body := e.do("PUT", "/v1/inventory/ports/"+p.Name, admin, p); code != 200 {
			e.t.Fatalf("lease %s: %d %s", p.Name, code, body)
		}
	}
	return tok
}

func table2Body(t *testing.T) tenant.Domain {
	b, err := os.ReadFile("../../examples/table2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := tenant.ParsePolicy(b)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Domains[0]
	d.Tenant = ""
	return d
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	a, b := e.owner("alice"), e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("alice create: %d %s", code, body)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/domains/100"}, {"PUT", "/v1/domains/100"}, {"DELETE", "/v1/domains/100"},
		{"GET", "/v1/domains/100/vms"}, {"POST", "/v1/domains/100/subnets/subD1/vms"},
		{"POST", "/v1/domains/100/subnets/subD1/acrs"}, {"DELETE", "/v1/domains/100/vms/VM1"},
		{"POST", "/v1/domains/100/check"},
	} {
		var body any
		switch tc.method {
		case "PUT":
			body = table2Body(t)
		case "POST":
			body = map[string]any{}
			if strings.HasSuffix(tc.path, "vms") {
				body = tenant.VM{Name: "evil", MAC: "02:00:00:00:00:99", IP: "192.168.1.99", Port: "evil"}
			} else if strings.HasSuffix(tc.path, "check") {
				body = controller.CheckRequest{From: "VM1", To: "VM3"}
			} else {
				body = tenant.ACR{Priority: 9, Action: "pass"}
			}
		}
		if code, out := e.do(tc.method, tc.path, b, body); code != 404 {
			t.Errorf("bob %s %s: %d %s, want 404", tc.method, tc.path, code, out)
		}
	}
	code, out := e.do("GET", "/v1/domains", b, nil)
	if code != 200 || strings.TrimSpace(string(out)) != "[]" {
		t.Fatalf("bob sees domains: %s", out)
	}
	// Bob's conflicting domain (same port) gets an error that names nothing of alice's.
	evil := tenant.Domain{TID: 200, Name: "b", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{{Name: "x", MAC: "02:00:00:00:00:01", IP: "10.0.0.1", Port: "vm1"}}}}}
	code, out = e.do("POST", "/v1/domains", b, evil)
	if code != 422 || strings.Contains(string(out), "paper-table2") || strings.Contains(string(out), "VM1") {
		t.Fatalf("cross-tenant conflict: %d %s", code, out)
	}
	if code, _ := e.do("POST", "/v1/tenants", a, map[string]string{"id": "mallory"}); code != 403 {
		t.Fatalf("tenant created a tenant: %d", code)
	}
	if code, _ := e.do("GET", "/v1/domains/100", admin, nil); code != 200 {
		t.Fatalf("admin cannot read: %d", code)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	_, before := e.do("GET", "/v1/domains", a, nil)
	applies := len(e.node.applied)
	tests := []struct {
		name, method, path, token string
		body                      any
		want                      int
		msg                       string
	}{
		{"no token", "GET", "/v1/domains", "", nil, 401, "token"},
		{"bad token", "GET", "/v1/domains", "nope", nil, 401, "token"},
		{"malformed json", "POST", "/v1/domains", a, `{"tid": 5,`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/domains", a, `{"tid": 5, "name": "x", "evil": 1}`, 400, "unknown field"},
		{"trailing data", "POST", "/v1/domains", a, `{"tid": 5, "name": "x"} {}`, 400, "trailing"},
		{"duplicate tid", "POST", "/v1/domains", a, table2Body(t), 409, "constraint a"},
		{"bad tid path", "GET", "/v1/domains/abc", a, nil, 400, "not a number"},
		{"bad mac", "POST", "/v1/domains/100/subnets/subD1/vms", a, tenant.VM{Name: "v4", MAC: "xx", IP: "192.168.1.40", Port: "vm4"}, 422, "MAC"},
		{"bad ip", "POST", "/v1/domains/100/subnets/subD1/vms", a, tenant.VM{Name: "v4", MAC: "02:00:00:00:00:44", IP: "192.168.1", Port: "vm4"}, 422, "IP"},
		{"bad cidr", "POST", "/v1/domains/100/subnets", a, tenant.Subnet{Name: "s3", CIDR: "10.0.0.0/40"}, 422, "prefix"},
		{"unknown subnet", "POST", "/v1/domains/100/subnets/nope/vms", a, tenant.VM{Name: "v4", MAC: "02:00:00:00:00:44", IP: "192.168.1.40", Port: "vm4"}, 404, "subnet"},
		{"unknown vm in acr", "POST", "/v1/domains/100/subnets/subD1/acrs", a, tenant.ACR{Priority: 3, SrcMAC: []string{"VM9"}, Action: "pass"}, 422, "VM9"},
		{"priority out of range", "POST", "/v1/domains/100/subnets/subD1/acrs", a, `{"priority": 70000, "action": "pass"}`, 422, "priority"},
		{"bad port", "POST", "/v1/domains/100/subnets/subD1/acrs", a, `{"priority": 1, "dstport": 70000, "action": "pass"}`, 400, "port"},
		{"delete vm named by acrs", "DELETE", "/v1/domains/100/vms/VM3", a, nil, 422, "VM3"},
		{"unknown acr", "DELETE", "/v1/domains/100/acrs/acr-nope", a, nil, 404, "acr"},
		{"huge body", "POST", "/v1/domains", a, `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, 400, "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := e.do(tt.method, tt.path, tt.token, tt.body)
			if code != tt.want || !strings.Contains(string(out), tt.msg) {
				t.Fatalf("got %d %s, want %d with %q", code, out, tt.want, tt.msg)
			}
			var ae APIError
			if json.Unmarshal(out, &ae) != nil || ae.Status != code || ae.Message == "" {
				t.Fatalf("error body %s is not an APIError", out)
			}
		})
	}
	if _, after := e.do("GET", "/v1/domains", a, nil); !bytes.Equal(before, after) {
		t.Fatalf("bad requests changed the state:\n%s\n%s", before, after)
	}
	if len(e.node.applied) != applies {
		t.Fatalf("bad requests reached the switch")
	}
}

// TestRefusedChangeIsReported: the controller commits first, then the
// host applies. A change the host refuses stays stored and is reported
// as failed (502, the domain's status says so, the host's own words only
// to the admin); the host keeps its previous state, and the next change
// it accepts is applied. A host that has not answered within ?wait= makes
// a change 202 pending.
func TestRefusedChangeIsReported(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	status := func(token string) controller.DomainStatus {
		code, out := e.do("GET", "/v1/domains/100/status", token, nil)
		var st controller.DomainStatus
		if code != 200 || json.Unmarshal(out, &st) != nil {
			t.Fatalf("status: %d %s", code, out)
		}
		return st
	}
	if st := status(a); st.State != "applied" || st.Revision != 1 || len(st.Hosts) != 1 || st.Hosts[0].Revision != 1 {
		t.Fatalf("after create: %+v", st)
	}
	applies := len(e.node.applied)
	e.node.fail = true
	code, out := e.do("POST", "/v1/domains/100/subnets/subD1/acrs", a, tenant.ACR{Priority: 9, Action: "pass"})
	if code != 502 || !strings.Contains(string(out), "stored") || strings.Contains(string(out), "switch said no") {
		t.Fatalf("refused change, tenant: %d %s", code, out)
	}
	if len(e.node.applied) != applies {
		t.Fatal("the fake applied a refused change")
	}
	st := status(a)
	if st.State != "failed" || st.Revision != 2 || st.Hosts[0].State != "failed" || strings.Contains(st.Hosts[0].Message, "switch said no") {
		t.Fatalf("status after refusal (tenant): %+v", st)
	}
	if st := status(admin); !strings.Contains(st.Hosts[0].Message, "switch said no") {
		t.Fatalf("the admin is not told why: %+v", st)
	}
	var hosts []controller.HostView
	_, hb := e.do("GET", "/v1/hosts", admin, nil)
	if json.Unmarshal(hb, &hosts) != nil || len(hosts) != 1 || hosts[0].State != "failed" || hosts[0].Applied >= hosts[0].Generation {
		t.Fatalf("hosts: %s", hb)
	}
	if code, _ := e.do("GET", "/v1/hosts", a, nil); code != 403 {
		t.Fatalf("a tenant lists hosts: %d", code)
	}
	e.node.fail = false
	if code, out := e.do("POST", "/v1/domains/100/subnets/subD1/acrs", a, tenant.ACR{Priority: 8, Action: "drop"}); code != 201 {
		t.Fatalf("next change: %d %s", code, out)
	}
	if st := status(a); st.State != "applied" || st.Revision != 3 {
		t.Fatalf("after the next change: %+v", st)
	}
	// A host that does not answer: pending after the wait.
	e.node.mu.Lock()
	e.node.silent = true
	e.node.mu.Unlock()
	code, out = e.do("POST", "/v1/domains/100/subnets/subD1/acrs?wait=50ms", a, tenant.ACR{Priority: 7, Action: "drop"})
	if code != 202 || !strings.Contains(string(out), "pending") {
		t.Fatalf("unanswered change: %d %s", code, out)
	}
	if st := status(a); st.State != "pending" || st.Revision != 4 || st.Hosts[0].Revision != 3 {
		t.Fatalf("status while pending: %+v", st)
	}
	for _, q := range []string{"?wait=forever", "?wait=-1s", "?wait=1h", "?wait=1s&wait=2s"} {
		if code, _ := e.do("POST", "/v1/domains/100/subnets/subD1/acrs"+q, a, tenant.ACR{Priority: 6, Action: "drop"}); code != 400 {
			t.Errorf("%s: %d", q, code)
		}
	}
	if code, _ := e.do("GET", "/v1/domains/100?wait=1s", a, nil); code != 400 {
		t.Errorf("wait on a read: %d", code)
	}
	// A dry run whose host does not answer still says what changes in the
	// store, and which host could not plan its flows.
	_, cur := e.do("GET", "/v1/domains/100", a, nil)
	var d tenant.Domain
	json.Unmarshal(cur, &d)
	d.Subnets[0].ACRs = append(d.Subnets[0].ACRs, tenant.ACR{Priority: 5, Action: "drop"})
	code, out = e.do("POST", "/v1/apply?dry_run=1", a, tenant.Policy{Domains: []tenant.Domain{d}})
	var plan controller.ApplyPlan
	if json.Unmarshal(out, &plan) != nil || code != 200 || !plan.Changed || plan.FlowsPlanned || len(plan.FlowsUnplanned) != 1 {
		t.Fatalf("dry run with a silent host: %d %s", code, out)
	}
}

func TestCRUDAndCheck(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	d := table2Body(t)
	d.Subnets[1].ACRs = nil // VM3 unreachable at first
	if code, body := e.do("POST", "/v1/domains", a, d); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	check := func() string {
		code, out := e.do("POST", "/v1/domains/100/check", a, controller.CheckRequest{From: "VM1", To: "VM3", Proto: "tcp", DstPort: 22})
		if code != 200 {
			t.Fatalf("check: %d %s", code, out)
		}
		var v tenant.Verdict
		json.Unmarshal(out, &v)
		return string(v.Action)
	}
	if got := check(); got != "drop" {
		t.Fatalf("before rules: %s", got)
	}
	var ids []string
	for _, body := range []string{
		`{"priority": 5, "srcmac": ["VM1", "VM2"], "dstmac": ["VM3"], "dstport": 22, "action": "pass"}`,
		`{"priority": 5, "srcmac": ["VM3"], "dstmac": ["VM1", "VM2"], "srcport": 22, "action": "pass"}`,
	} {
		code, out := e.do("POST", "/v1/domains/100/subnets/subD2/acrs", a, body)
		if code != 201 {
			t.Fatalf("add acr: %d %s", code, out)
		}
		var r tenant.ACR
		json.Unmarshal(out, &r)
		ids = append(ids, r.ID)
	}
	if got := check(); got != "pass" {
		t.Fatalf("after rules: %s", got)
	}
	last := e.node.applied[len(e.node.applied)-1]
	if n := len(last[0].Subnets[1].ACRs); n != 2 {
		t.Fatalf("the switch got %d rules", n)
	}
	for _, id := range ids {
		if code, out := e.do("DELETE", "/v1/domains/100/acrs/"+id, a, nil); code != 204 {
			t.Fatalf("delete acr: %d %s", code, out)
		}
	}
	if got := check(); got != "drop" {
		t.Fatalf("after delete: %s", got)
	}
	// A port the inventory does not lease to the tenant cannot be bound.
	vm4 := tenant.VM{Name: "VM4", MAC: "02:00:00:00:00:44", IP: "192.168.1.44", Port: "vm4"}
	if code, out := e.do("POST", "/v1/domains/100/subnets/subD2/vms", a, vm4); code != 422 || !strings.Contains(string(out), "not leased") {
		t.Fatalf("an unleased port: %d %s", code, out)
	}
	if code, out := e.do("PUT", "/v1/inventory/ports/vm4", admin, inventory.Port{Name: "vm4", Tenant: "alice"}); code != 200 {
		t.Fatalf("lease vm4: %d %s", code, out)
	}
	code, out := e.do("POST", "/v1/domains/100/subnets/subD2/vms", a, vm4)
	if code != 201 || !regexp.MustCompile(`"uuid": "[0-9a-f-]{36}"`).Match(out) {
		t.Fatalf("add vm: %d %s", code, out)
	}
	if code, _ := e.do("DELETE", "/v1/domains/100/vms/VM4", a, nil); code != 204 {
		t.Fatalf("delete vm: %d", code)
	}
	code, out = e.do("GET", "/v1/events", a, nil)
	if code != 200 || !strings.Contains(string(out), "acr.deleted") {
		t.Fatalf("events: %d %s", code, out)
	}
	if code, _ := e.do("DELETE", "/v1/domains/100", a, nil); code != 204 {
		t.Fatalf("delete domain: %d", code)
	}
	if last := e.node.applied[len(e.node.applied)-1]; len(last) != 0 {
		t.Fatalf("switch still has %d domains", len(last))
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	e := newEnv(t)
	code, out := e.do("GET", "/v1/openapi.json", "", nil)
	if code != 200 {
		t.Fatalf("openapi: %d", code)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("bad document: %v", err)
	}
	routes := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil))).Routes()
	if len(routes) < 15 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	// Every operation has an operationId, and no two the same.
	ids := map[string]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			m, _ := op.(map[string]any)
			id, _ := m["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s has no operationId", method, path)
			} else if other, dup := ids[id]; dup {
				t.Errorf("operationId %s on %s %s and %s", id, method, path, other)
			}
			ids[id] = method + " " + path
		}
	}
}

func FuzzDomainJSON(f *testing.F) {
	seed, _ := json.Marshal(tenant.Domain{TID: 7, Name: "d", Subnets: []tenant.Subnet{{Name: "s", VMs: []tenant.VM{{Name: "a", MAC: "02:00:00:00:00:01", IP: "10.0.0.1", Port: "pa"}}, ACRs: []tenant.ACR{{Priority: 1, Action: "pass", DstPort: tenant.PortRange{Lo: 1, Hi: 9}}}}}})
	f.Add(seed)
	f.Add([]byte(`{"tid": 1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := store.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		c, _ := controller.New(st, &fakeNode{}, admin, log)
		h := New(c, log)
		req := httptest.NewRequest("POST", "/v1/domains", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%d for %q: %s", rec.Code, body, rec.Body)
		}
		if rec.Code != 201 {
			st.View(context.Background(), func(tx *store.Tx) error {
				if ds, _ := tx.Domains(); len(ds) != 0 {
					t.Fatalf("rejected request stored %d domains", len(ds))
				}
				return nil
			})
		}
	})
}

func TestEventStream(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+a)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, "domain.created") {
				return
			}
		case <-deadline:
			t.Fatal("no domain.created event on the stream")
		}
	}
}

func TestNADPolicyEndpoints(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/nad", a, `{"window": "1ms"}`); code != 422 || !strings.Contains(string(out), "nad window") {
		t.Fatalf("bad window: %d %s", code, out)
	}
	if code, _ := e.do("PUT", "/v1/domains/100/vms/VM9/nad", a, `{}`); code != 404 {
		t.Fatalf("unknown vm: %d", code)
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/nad", a, `{"window": "10s", "history": 30}`); code != 204 {
		t.Fatalf("enable: %d %s", code, out)
	}
	last := e.node.applied[len(e.node.applied)-1]
	if p := last[0].Subnets[1].VMs[0].NAD; p == nil || p.Window != "10s" || p.History != 30 {
		t.Fatalf("the node got %+v", p)
	}
	if code, _ := e.do("DELETE", "/v1/domains/100/vms/VM3/nad", a, nil); code != 204 {
		t.Fatalf("disable: %d", code)
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].NAD; p != nil {
		t.Fatalf("still enabled: %+v", p)
	}
}

// TestVMIEndpoints: a VMI policy is validated, reaches the node, and the
// latest report a node records is served to the VM's tenant only.
func TestVMIEndpoints(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	b := e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for body, want := range map[string]string{
		`{"memory": "/etc/shadow"}`:         "host inventory",
		`{"interval": "1ms"}`:               "vmi interval",
		`{"indicators": ["threads"]}`:       "vmi indicator",
		`{"interval": "2s", "bogus": 1}`:    "bogus",
		`{"interval": "2s", "interval": 1}`: "duplicate key",
	} {
		if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/vmi", a, body); code/100 != 4 || !strings.Contains(string(out), want) {
			t.Errorf("%s: %d %s", body, code, out)
		}
	}
	// VM1's port has no RAM file in the inventory.
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM1/vmi", a, `{"interval": "2s"}`); code != 409 || !strings.Contains(string(out), "inventory") {
		t.Errorf("a VM without a RAM file: %d %s", code, out)
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/vmi", a, `{"interval": "2s", "indicators": ["hidden_processes"]}`); code != 204 {
		t.Fatalf("enable: %d %s", code, out)
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].VMI; p == nil || p.Memory != "" || p.Interval != "2s" {
		t.Fatalf("the node got %+v", p)
	}
	if inv := e.node.inv[len(e.node.inv)-1]; inv["vm3"].Memory != "/dev/shm/g3" {
		t.Fatalf("the node's inventory: %+v", inv)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/vmi/report", a, nil); code != 404 {
		t.Fatalf("report before any cycle: %d", code)
	}
	e.result(node.Result{TID: 100, VM: "VM3", Kind: "vmi", Tenant: "alice", Doc: []byte(`{"kernel": "6.1.0-56-amd64", "hidden_processes": []}`)})
	code, out := e.do("GET", "/v1/domains/100/vms/VM3/vmi/report", a, nil)
	if code != 200 || !strings.Contains(string(out), "6.1.0-56-amd64") {
		t.Fatalf("report: %d %s", code, out)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/vmi/report", b, nil); code != 404 {
		t.Fatalf("another tenant read the report: %d", code)
	}
	if code, _ := e.do("DELETE", "/v1/domains/100/vms/VM3/vmi", a, nil); code != 204 {
		t.Fatal("disable")
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].VMI; p != nil {
		t.Fatalf("still enabled: %+v", p)
	}
}

// TestAVEndpoints: an AV policy is validated and reaches the node; scans
// need a policy and a node that runs HyperAV; reports are per tenant.
func TestAVEndpoints(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	b := e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _ := e.do("POST", "/v1/domains/100/vms/VM3/av/scan", a, `{"path": "/etc/x"}`); code != 409 {
		t.Fatalf("scan without a policy: %d", code)
	}
	for body, want := range map[string]string{
		`{"mode": "front", "disk": "/etc/shadow", "socket": "/etc/passwd"}`: "host inventory",
		`{"qmp": "/run/other.sock"}`:                                        "host inventory",
		`{"guest_port": "/tmp/x"}`:                                          "host inventory",
		`{"paths": ["etc/x"]}`:                                              "av path",
		`{"schedule": "forever"}`:                                           "av schedule",
		`{"policy": "x"}`:                                                   "av policy",
		`{"engines": ["clamd", "virustotal"]}`:                              "av engine",
	} {
		if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/av", a, body); code != 422 || !strings.Contains(string(out), want) {
			t.Errorf("%s: %d %s", body, code, out)
		}
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM2/av", a, `{"paths": ["/etc/x"]}`); code != 409 || !strings.Contains(string(out), "inventory") {
		t.Errorf("a VM without a disk: %d %s", code, out)
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/av", a, `{"paths": ["/etc/x"]}`); code != 204 {
		t.Fatalf("enable: %d %s", code, out)
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].AV; p == nil || len(p.Paths) != 1 {
		t.Fatalf("the node got %+v", p)
	}
	if code, out := e.do("POST", "/v1/domains/100/vms/VM3/av/scan", a, `{"path": "relative"}`); code != 422 {
		t.Fatalf("relative path: %d %s", code, out)
	}
	if code, out := e.do("POST", "/v1/domains/100/vms/VM3/av/scan", a, `{"path": "/etc/x"}`); code != 502 || !strings.Contains(string(out), "HyperAV") {
		t.Fatalf("a node without HyperAV: %d %s", code, out)
	}
	if code, _ := e.do("POST", "/v1/domains/100/vms/VM3/av/scan", b, `{"path": "/etc/x"}`); code != 404 {
		t.Fatalf("another tenant's VM: %d", code)
	}
	e.result(node.Result{TID: 100, VM: "VM3", Kind: "av", Tenant: "alice", Doc: []byte(`{"mode": "front", "chunks": {"INFECTED": 1}}`)})
	if code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 200 || !strings.Contains(string(out), "INFECTED") {
		t.Fatalf("report: %d %s", code, out)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", b, nil); code != 404 {
		t.Fatalf("another tenant's report: %d", code)
	}
}

// TestAVReportIsLive: while the node runs the VM's service the report is
// its live status (a scan or isolation shows at once, not at the next
// round); otherwise the last stored round; never another tenant's.
func TestAVReportIsLive(t *testing.T) {
	var status *hyperav.Status // HyperAV runs for VM3 of domain 100 only, when set
	e := newEnvWith(t, &fakeNode{av: func(c node.Call) (json.RawMessage, error) {
		if c.Op != node.OpAVStatus || c.TID != 100 || c.VM != "VM3" || status == nil {
			return nil, node.ErrNoService
		}
		return json.Marshal(status)
	}})
	a, b := e.owner("alice"), e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 404 {
		t.Fatalf("report with neither a service nor a stored round: %d", code)
	}
	e.result(node.Result{TID: 100, VM: "VM3", Kind: "av", Tenant: "alice", Doc: []byte(`{"mode": "front", "chunks": {"INFECTED": 0}, "epochs": 7}`)})
	if code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 200 || !strings.Contains(string(out), `"epochs": 7`) {
		t.Fatalf("stored report: %d %s", code, out)
	}
	status = &hyperav.Status{Mode: "front", Chunks: map[string]int{hyperav.Infected: 1}, Epochs: 8}
	code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil)
	if code != 200 || !strings.Contains(string(out), `"epochs":8`) || !strings.Contains(string(out), `"INFECTED":1`) {
		t.Fatalf("live report: %d %s", code, out)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", b, nil); code != 404 {
		t.Fatalf("another tenant's live report: %d", code)
	}
}

// TestEveryRouteRefusesStrangers is generated from the route table, so a
// new route is covered without editing it: every authenticated route,
// with its path filled in with alice's objects, is called with no token,
// a wrong token, a right token without the Bearer scheme, and bob's
// token, each with a body that would be valid for alice. None may
// succeed, and nothing alice owns or the host inventory holds may change.
func TestEveryRouteRefusesStrangers(t *testing.T) {
	e := newEnv(t)
	a, b := e.owner("alice"), e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("alice create: %d %s", code, body)
	}
	if code, body := e.do("PUT", "/v1/domains/100/vms/VM3/vmi", a, `{"interval": "2s"}`); code != 204 {
		t.Fatalf("alice vmi: %d %s", code, body)
	}
	code, body := e.do("GET", "/v1/domains/100", a, nil)
	var d tenant.Domain
	if code != 200 || json.Unmarshal(body, &d) != nil {
		t.Fatalf("get: %d %s", code, body)
	}
	acr := d.Subnets[0].ACRs[0].ID
	fill := strings.NewReplacer("{tid}", "100", "{subnet}", "subD1", "{vm}", "VM3", "{id}", acr, "{port}", "vm3")
	bodies := map[string]any{
		"POST /v1/tenants":                             map[string]string{"id": "mallory"},
		"PUT /v1/domains/{tid}":                        table2Body(t),
		"POST /v1/domains":                             table2Body(t),
		"POST /v1/domains/{tid}/subnets":               tenant.Subnet{Name: "evil"},
		"POST /v1/domains/{tid}/subnets/{subnet}/vms":  tenant.VM{Name: "evil", MAC: "02:00:00:00:00:99", IP: "192.168.1.99", Port: "vm3"},
		"POST /v1/domains/{tid}/subnets/{subnet}/acrs": tenant.ACR{Priority: 9, Action: "pass"},
		"POST /v1/domains/{tid}/acrs":                  map[string]any{"subnet": "subD1", "priority": 9, "action": "pass"},
		"POST /v1/apply":                               tenant.Policy{Domains: []tenant.Domain{table2Body(t)}},
		"POST /v1/domains/{tid}/check":                 controller.CheckRequest{From: "VM1", To: "VM3"},
		"PUT /v1/domains/{tid}/vms/{vm}/nad":           tenant.NADPolicy{},
		"PUT /v1/domains/{tid}/vms/{vm}/vmi":           tenant.VMIPolicy{},
		"PUT /v1/domains/{tid}/vms/{vm}/av":            tenant.AVPolicy{Paths: []string{"/etc/x"}},
		"POST /v1/domains/{tid}/vms/{vm}/av/scan":      map[string]string{"path": "/etc/x"},
		"POST /v1/domains/{tid}/vms/{vm}/av/isolate":   map[string]string{"path": "/etc/x"},
		"PUT /v1/inventory/ports/{port}":               inventory.Port{Name: "vm3", Tenant: "bob", Memory: "/dev/shm/x"},
	}
	snapshot := func() string {
		ctx := context.Background()
		admin := controller.Caller{Admin: true}
		ds, err1 := e.ctl.Domains(ctx, admin)
		ps, err2 := e.ctl.Ports(ctx, admin)
		ts, err3 := e.ctl.Tenants(ctx, admin)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal([]any{ds, ps, ts})
		return string(b)
	}
	before := snapshot()
	routes := New(e.ctl, slog.New(slog.NewTextHandler(io.Discard, nil))).Routes()
	if len(routes) < 25 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		path := fill.Replace(pattern)
		var body any = "{}"
		if bd, ok := bodies[route]; ok {
			body = bd
		}
		for _, who := range []struct{ name, header string }{
			{"no token", ""}, {"wrong token", "Bearer st_0000000000000000000000000000000000000000000000"},
			{"no Bearer scheme", a}, {"Basic scheme", "Basic " + a}, {"bob", "Bearer " + b},
		} {
			var rd io.Reader
			switch v := body.(type) {
			case string:
				rd = strings.NewReader(v)
			default:
				js, _ := json.Marshal(v)
				rd = bytes.NewReader(js)
			}
			req, _ := http.NewRequest(method, e.srv.URL+path, rd)
			if who.header != "" {
				req.Header.Set("Authorization", who.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := []int{401}
			if who.name == "bob" {
				want = []int{403, 404, 409}
				if method == "GET" && (pattern == "/v1/tenants" || pattern == "/v1/domains" || pattern == "/v1/events" || pattern == "/v1/inventory/ports") {
					// Lists answer with bob's own (empty) share.
					want = []int{200}
					if strings.Contains(string(out), "alice") || strings.Contains(string(out), "vm3") {
						t.Errorf("bob %s lists alice's objects: %s", route, out)
					}
				}
			}
			if !slices.Contains(want, resp.StatusCode) {
				t.Errorf("%s %s: %d %s, want one of %v", who.name, route, resp.StatusCode, out, want)
			}
		}
	}
	if after := snapshot(); after != before {
		t.Fatalf("strangers changed alice's state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestHostResourcesAreNotTheTenants: a tenant names no host path, cannot
// write the inventory, and the admin's records stay beneath the roots and
// off the bridge's own port.
func TestHostResourcesAreNotTheTenants(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	// The attacks of issue 16 as a tenant would try them.
	for _, tc := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/domains/100/vms/VM3/av", `{"mode": "front", "disk": "/root/secret", "socket": "/run/evil.sock"}`, "host inventory"},
		{"PUT", "/v1/domains/100/vms/VM3/av", `{"mode": "front", "disk": "/srv/images/vm3.raw", "socket": "/etc/passwd"}`, "host inventory"},
		{"PUT", "/v1/domains/100/vms/VM3/vmi", `{"memory": "/root/secret"}`, "host inventory"},
		{"PUT", "/v1/inventory/ports/vm3", `{"name": "vm3", "tenant": "alice", "memory": "/root/secret"}`, "admin"},
		{"PUT", "/v1/inventory/ports/vm9", `{"name": "vm9", "tenant": "alice"}`, "admin"},
		{"DELETE", "/v1/inventory/ports/vm1", ``, "admin"},
	} {
		code, out := e.do(tc.method, tc.path, a, tc.body)
		if code/100 != 4 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, code, out)
		}
	}
	// Domains bind leased ports only: not another tenant's, not the
	// bridge's, not an unleased one, and uplinks only as uplinks.
	e.do("PUT", "/v1/inventory/ports/bobs", admin, inventory.Port{Name: "bobs", Tenant: "bob"})
	e.do("PUT", "/v1/inventory/ports/up1", admin, inventory.Port{Name: "up1", Tenant: "alice", Uplink: true})
	for port, want := range map[string]string{"bobs": "not leased", "br0": "reserved", "LOCAL": "reserved", "nope": "not leased", "up1": "uplink"} {
		vm := tenant.VM{Name: "evil", MAC: "02:00:00:00:00:99", IP: "192.168.1.99", Port: port}
		if code, out := e.do("POST", "/v1/domains/100/subnets/subD1/vms", a, vm); code != 422 || !strings.Contains(string(out), want) {
			t.Errorf("vm on %s: %d %s", port, code, out)
		}
	}
	d := table2Body(t)
	for up, want := range map[string]string{"bobs": "not leased", "vm1": "uplink", "br0": "reserved", "up1": ""} {
		d.Uplinks = []string{up}
		code, out := e.do("PUT", "/v1/domains/100", a, d)
		if want == "" && code != 200 || want != "" && (code != 422 || !strings.Contains(string(out), want)) {
			t.Errorf("uplink %s: %d %s", up, code, out)
		}
	}
	// The admin's records: beneath the roots, clean, not the bridge's port.
	for _, p := range []inventory.Port{
		{Name: "vm5", Tenant: "alice", Memory: "/root/secret"},
		{Name: "vm5", Tenant: "alice", Memory: "/dev/shm/../../root/secret"},
		{Name: "vm5", Tenant: "alice", Memory: "/dev/shm"},
		{Name: "vm5", Tenant: "alice", Disk: &inventory.Disk{Image: "/srv/images-evil/x", Mode: "bitmap", Node: "n"}},
		{Name: "vm5", Tenant: "alice", Disk: &inventory.Disk{Image: "/srv/images/x", Mode: "front", Socket: "/etc/x.sock"}},
		{Name: "br0", Tenant: "alice"},
		{Name: "up2", Tenant: "alice", Uplink: true, Memory: "/dev/shm/x"},
		{Name: "vm5", Tenant: "nobody"},
	} {
		if code, out := e.do("PUT", "/v1/inventory/ports/"+p.Name, admin, p); code/100 != 4 {
			t.Errorf("admin record %+v: %d %s", p, code, out)
		}
	}
	// A bound port keeps its tenant and cannot be deleted.
	if code, out := e.do("PUT", "/v1/inventory/ports/vm1", admin, inventory.Port{Name: "vm1", Tenant: "bob"}); code != 409 {
		t.Errorf("re-lease a bound port: %d %s", code, out)
	}
	if code, out := e.do("DELETE", "/v1/inventory/ports/vm1", admin, nil); code != 409 {
		t.Errorf("delete a bound port: %d %s", code, out)
	}
	// A tenant sees its ports without host paths.
	code, out := e.do("GET", "/v1/inventory/ports/vm3", a, nil)
	if code != 200 || strings.Contains(string(out), "/dev/shm") || strings.Contains(string(out), "/srv/images") {
		t.Errorf("tenant's view of its port: %d %s", code, out)
	}
}

// TestUnknownRoutesAnswerJSON: a path with no route is a JSON 404, a
// route with another method a JSON 405 with Allow.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		method, path string
		code         int
		kind         string
	}{
		{"GET", "/v1/nope", 404, "not_found"},
		{"GET", "/", 404, "not_found"},
		{"PATCH", "/v1/domains", 405, "method_not_allowed"},
		{"DELETE", "/v1/events", 405, "method_not_allowed"},
	} {
		req, _ := http.NewRequest(tc.method, e.srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body APIError
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.code || body.Status != tc.code || body.Error != tc.kind || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %+v %v %q", tc.method, tc.path, resp.StatusCode, body, err, resp.Header.Get("Content-Type"))
		}
		if tc.code == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", tc.method, tc.path)
		}
	}
}

// TestEventsQuery: newest first, bounded, filtered by kind (exact or
// prefix), VM and time; bad parameters are 400, never read as 0.
func TestEventsQuery(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	ctx := context.Background()
	for i, k := range []string{"vmi.hidden_process", "vmi.error", "av.infected", "nad.alert", "vmi.hidden_module"} {
		vm := "VM1"
		if i%2 == 1 {
			vm = "VM3"
		}
		if err := e.ctl.Sink().Events(ctx, []node.Event{{Host: "h", Seq: uint64(i + 1), Tenant: "alice", Kind: k, Subject: "vm/" + vm, Detail: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(query string) (int, []store.Event) {
		code, out := e.do("GET", "/v1/events"+query, a, nil)
		var ev []store.Event
		json.Unmarshal(out, &ev)
		return code, ev
	}
	code, ev := get("")
	if code != 200 || len(ev) < 5 || ev[0].Kind != "vmi.hidden_module" || ev[0].ID < ev[len(ev)-1].ID {
		t.Fatalf("newest first: %d %+v", code, ev)
	}
	if _, ev := get("?limit=2"); len(ev) != 2 || ev[0].Kind != "vmi.hidden_module" {
		t.Errorf("limit: %+v", ev)
	}
	if _, ev := get("?kind=vmi."); len(ev) != 3 {
		t.Errorf("kind prefix: %+v", ev)
	}
	if _, ev := get("?kind=vmi.error"); len(ev) != 1 || ev[0].Detail != "1" {
		t.Errorf("kind: %+v", ev)
	}
	if _, ev := get("?vm=VM3"); len(ev) != 2 {
		t.Errorf("vm: %+v", ev)
	}
	if _, ev := get("?kind=vmi.&vm=VM1"); len(ev) != 2 {
		t.Errorf("kind and vm: %+v", ev)
	}
	if _, ev := get("?since=1h"); len(ev) < 5 {
		t.Errorf("since 1h: %+v", ev)
	}
	if _, ev := get("?since=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339)); len(ev) != 0 {
		t.Errorf("since the future: %+v", ev)
	}
	_, all := get("")
	if _, ev := get(fmt.Sprintf("?after=%d", all[1].ID)); len(ev) != 1 || ev[0].ID != all[0].ID {
		t.Errorf("after: %+v", ev)
	}
	for _, bad := range []string{"?after=abc", "?after=-1", "?limit=0", "?limit=5000", "?since=yesterday", "?kind=Bad Kind", "?vm=../x", "?bogus=1", "?limit=1&limit=2", "?follow=maybe"} {
		if code, out := e.do("GET", "/v1/events"+bad, a, nil); code != 400 {
			t.Errorf("%s: %d %s", bad, code, out)
		}
	}
}

// TestStaleRevisionIs412: two operators read domain 100; the first one's
// change goes through, the second one's (If-Match with the revision it
// read, or the revision in its body) answers 412 and changes nothing.
func TestStaleRevisionIs412(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	read := func() (tenant.Domain, string) {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/domains/100", nil)
		req.Header.Set("Authorization", "Bearer "+a)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d tenant.Domain
		json.NewDecoder(resp.Body).Decode(&d)
		return d, resp.Header.Get("ETag")
	}
	d, tag := read()
	if d.Revision != 1 || tag != `"1"` {
		t.Fatalf("revision %d, ETag %q", d.Revision, tag)
	}
	send := func(method, path, ifMatch string, body any) (int, []byte) {
		js, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(js))
		req.Header.Set("Authorization", "Bearer "+a)
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	acr := map[string]any{"subnet": "subD1", "priority": 3, "action": "drop"}
	if code, out := send("POST", "/v1/domains/100/acrs", tag, acr); code != 201 {
		t.Fatalf("first operator: %d %s", code, out)
	}
	applied := len(e.node.applied)
	if code, out := send("POST", "/v1/domains/100/acrs", tag, acr); code != 412 || !strings.Contains(string(out), "revision 2") {
		t.Fatalf("second operator, stale If-Match: %d %s", code, out)
	}
	d.Subnets[0].ACRs = nil // the second operator's edit of what it read
	if code, out := send("PUT", "/v1/domains/100", "", d); code != 412 {
		t.Fatalf("stale revision in the body: %d %s", code, out)
	}
	if code, out := send("DELETE", "/v1/domains/100", tag, nil); code != 412 {
		t.Fatalf("stale delete: %d %s", code, out)
	}
	if len(e.node.applied) != applied {
		t.Fatal("a refused change reached the node")
	}
	if now, tag2 := read(); now.Revision != 2 || tag2 != `"2"` || len(now.Subnets[0].ACRs) == 0 {
		t.Fatalf("after: revision %d %q, %d acrs", now.Revision, tag2, len(now.Subnets[0].ACRs))
	}
	d.Revision = 2
	if code, out := send("PUT", "/v1/domains/100", `"2"`, d); code != 200 {
		t.Fatalf("a change at the current revision: %d %s", code, out)
	}
	if code, out := send("GET", "/v1/domains/100", `"x"`, nil); code != 400 {
		t.Fatalf("a bad If-Match: %d %s", code, out)
	}
}

// TestApplyPolicy: apply is all or nothing and idempotent; a dry run
// changes nothing; another tenant's domain cannot be taken over.
func TestApplyPolicy(t *testing.T) {
	e := newEnv(t)
	a := e.owner("alice")
	b := e.tenant("bob")
	pol := tenant.Policy{Domains: []tenant.Domain{table2Body(t)}}
	n0 := len(e.node.applied) // the inventory's changes reached the node too
	apply := func(token, query string, p any) (int, controller.ApplyPlan, []byte) {
		code, out := e.do("POST", "/v1/apply"+query, token, p)
		var plan controller.ApplyPlan
		json.Unmarshal(out, &plan)
		return code, plan, out
	}
	code, plan, out := apply(a, "?dry_run=1", pol)
	if code != 200 || !plan.DryRun || !plan.Changed || plan.Domains[0].Action != "created" || len(e.node.applied) != n0+0 {
		t.Fatalf("dry run: %d %s (node applied %d)", code, out, len(e.node.applied))
	}
	if code, _ := e.do("GET", "/v1/domains/100", a, nil); code != 404 {
		t.Fatal("a dry run stored the domain")
	}
	code, plan, out = apply(a, "", pol)
	if code != 200 || !plan.Changed || plan.Domains[0].Action != "created" || len(e.node.applied) != n0+1 {
		t.Fatalf("apply: %d %s", code, out)
	}
	code, plan, out = apply(a, "", pol)
	if code != 200 || plan.Changed || plan.Domains[0].Action != "unchanged" || len(e.node.applied) != n0+1 {
		t.Fatalf("second apply changed something: %d %s", code, out)
	}
	// A change of one ACR is a replace; what the store filled in (UUIDs,
	// ACR ids) is not a change.
	pol.Domains[0].Subnets[1].ACRs[0].Priority = 8
	if code, plan, out = apply(a, "", pol); code != 200 || plan.Domains[0].Action != "replaced" || len(e.node.applied) != n0+2 {
		t.Fatalf("replace: %d %s", code, out)
	}
	// All or nothing: a second domain that is invalid stops both.
	bad := table2Body(t)
	bad.TID, bad.Subnets[0].VMs[0].MAC = 101, "not-a-mac"
	pol.Domains[0].Subnets[1].ACRs[0].Priority = 9
	if code, _, out := apply(a, "", tenant.Policy{Domains: []tenant.Domain{pol.Domains[0], bad}}); code != 422 {
		t.Fatalf("invalid second domain: %d %s", code, out)
	}
	_, out = e.do("GET", "/v1/domains/100", a, nil)
	if !strings.Contains(string(out), `"priority": 8`) || len(e.node.applied) != n0+2 {
		t.Fatalf("a refused apply changed domain 100: %s", out)
	}
	// Bob cannot apply over alice's domain, nor name alice as the tenant.
	if code, _, out := apply(b, "", pol); code != 404 {
		t.Fatalf("bob over alice's domain: %d %s", code, out)
	}
	pol.Domains[0].Tenant = "alice"
	if code, _, out := apply(b, "", pol); code != 422 {
		t.Fatalf("bob naming alice: %d %s", code, out)
	}
	for _, body := range []string{`{"domains": []}`, `{}`, `{"domains": [{"tid": 5}, {"tid": 5}]}`} {
		if code, _ := e.do("POST", "/v1/apply", a, body); code != 422 {
			t.Errorf("%s: %d", body, code)
		}
	}
	if code, _ := e.do("POST", "/v1/apply?force=1", a, pol); code != 400 {
		t.Error("an unknown query parameter")
	}
}

// TestDomainReadsFollowWrites: reads of a domain are served from a
// document kept per stored version, so they must follow every write, a
// domain deleted and created again with the same TID included, and never
// reach another tenant.
func TestDomainReadsFollowWrites(t *testing.T) {
	e := newEnv(t)
	a, b := e.owner("alice"), e.tenant("bob")
	d := table2Body(t)
	if code, out := e.do("POST", "/v1/domains", a, d); code != 201 {
		t.Fatalf("create: %d %s", code, out)
	}
	get := func(tok string) (int, tenant.Domain) {
		code, out := e.do("GET", "/v1/domains/100", tok, nil)
		var got tenant.Domain
		json.Unmarshal(out, &got)
		return code, got
	}
	if code, got := get(a); code != 200 || got.Name != d.Name {
		t.Fatalf("first read: %d %+v", code, got)
	}
	if code, _ := get(b); code != 404 {
		t.Fatalf("another tenant reads a kept document: %d", code)
	}
	if code, _ := e.do("DELETE", "/v1/domains/100", a, nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := get(a); code != 404 {
		t.Fatalf("read after delete: %d", code)
	}
	d.Name = "again"
	if code, out := e.do("POST", "/v1/domains", a, d); code != 201 {
		t.Fatalf("create again: %d %s", code, out)
	}
	if code, got := get(a); code != 200 || got.Name != "again" || got.Revision != 1 {
		t.Fatalf("read after the same TID was created again: %d %+v", code, got)
	}
	if code, out := e.do("POST", "/v1/domains/100/subnets/subD1/acrs", a, tenant.ACR{Priority: 9, Action: "pass"}); code != 201 {
		t.Fatalf("acr: %d %s", code, out)
	}
	if code, got := get(a); code != 200 || got.Revision != 2 {
		t.Fatalf("read after a change: %d revision %d", code, got.Revision)
	}
}
