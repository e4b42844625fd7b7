package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"secaas/internal/controller"
	"secaas/internal/hyperav"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

const admin = "admin-token-0123456789"

// fakeNode records what it is asked to apply and can refuse.
type fakeNode struct {
	mu      sync.Mutex
	applied [][]tenant.Domain
	fail    bool
}

func (f *fakeNode) Apply(_ context.Context, ds []tenant.Domain) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("switch said no")
	}
	f.applied = append(f.applied, ds)
	return nil
}

type env struct {
	t    *testing.T
	srv  *httptest.Server
	node *fakeNode
	ctl  *controller.Controller
}

func newEnv(t *testing.T) *env { return newEnvWith(t, &fakeNode{}) }

func newEnvWith(t *testing.T, node controller.Node) *env {
	t.Helper()
	st, err := store.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := controller.New(st, node, admin, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(c, log))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, ctl: c}
	switch n := node.(type) {
	case *fakeNode:
		e.node = n
	case *fakeAVNode:
		e.node = n.fakeNode
	}
	return e
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
	a, b := e.tenant("alice"), e.tenant("bob")
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
	a := e.tenant("alice")
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

func TestApplyFailureRollsBack(t *testing.T) {
	e := newEnv(t)
	a := e.tenant("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	_, before := e.do("GET", "/v1/domains", a, nil)
	e.node.fail = true
	code, out := e.do("POST", "/v1/domains/100/subnets/subD1/acrs", a, tenant.ACR{Priority: 9, Action: "pass"})
	if code != 502 {
		t.Fatalf("got %d %s", code, out)
	}
	e.node.fail = false
	if _, after := e.do("GET", "/v1/domains", a, nil); !bytes.Equal(before, after) {
		t.Fatal("a change the switch refused was stored")
	}
}

func TestCRUDAndCheck(t *testing.T) {
	e := newEnv(t)
	a := e.tenant("alice")
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
	code, out := e.do("POST", "/v1/domains/100/subnets/subD2/vms", a, tenant.VM{Name: "VM4", MAC: "02:00:00:00:00:44", IP: "192.168.1.44", Port: "vm4"})
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
	a := e.tenant("alice")
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
	a := e.tenant("alice")
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
	a := e.tenant("alice")
	b := e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for body, want := range map[string]string{
		`{"memory": "relative/path"}`:                         "absolute path",
		`{"memory": "/dev/shm/g", "interval": "1ms"}`:         "vmi interval",
		`{"memory": "/dev/shm/g", "indicators": ["threads"]}`: "vmi indicator",
		`{"memory": "/dev/shm/g", "bogus": 1}`:                "bogus",
	} {
		if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/vmi", a, body); code/100 != 4 || !strings.Contains(string(out), want) {
			t.Errorf("%s: %d %s", body, code, out)
		}
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/vmi", a, `{"memory": "/dev/shm/g", "interval": "2s", "indicators": ["hidden_processes"]}`); code != 204 {
		t.Fatalf("enable: %d %s", code, out)
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].VMI; p == nil || p.Memory != "/dev/shm/g" || p.Interval != "2s" {
		t.Fatalf("the node got %+v", p)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/vmi/report", a, nil); code != 404 {
		t.Fatalf("report before any cycle: %d", code)
	}
	e.ctl.RecordNodeResult(context.Background(), store.Result{TID: 100, VM: "VM3", Kind: "vmi", Tenant: "alice", Doc: []byte(`{"kernel": "6.1.0-56-amd64", "hidden_processes": []}`)})
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
	a := e.tenant("alice")
	b := e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _ := e.do("POST", "/v1/domains/100/vms/VM3/av/scan", a, `{"path": "/etc/x"}`); code != 409 {
		t.Fatalf("scan without a policy: %d", code)
	}
	for body, want := range map[string]string{
		`{"mode": "front", "disk": "/d.raw"}`:                                       "av socket",
		`{"mode": "bitmap", "disk": "/d.qcow2", "qmp": "/q.sock"}`:                  "node",
		`{"mode": "mirror", "disk": "/d.raw"}`:                                      "av mode",
		`{"mode": "front", "disk": "/d", "socket": "/s", "paths": ["etc/x"]}`:       "av path",
		`{"mode": "front", "disk": "/d", "socket": "/s", "schedule": "forever"}`:    "av schedule",
		`{"mode": "front", "disk": "/d", "socket": "/s", "transport": "iscsi"}`:     "av transport",
		`{"mode": "front", "disk": "/d", "socket": "/s", "cache": "directsync"}`:    "av cache",
		`{"mode": "bitmap", "disk": "/d", "qmp": "/q", "node": "n", "policy": "x"}`: "av policy",
	} {
		if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/av", a, body); code != 422 || !strings.Contains(string(out), want) {
			t.Errorf("%s: %d %s", body, code, out)
		}
	}
	if code, out := e.do("PUT", "/v1/domains/100/vms/VM3/av", a, `{"mode": "front", "disk": "/d.raw", "socket": "/s.sock", "paths": ["/etc/x"]}`); code != 204 {
		t.Fatalf("enable: %d %s", code, out)
	}
	if p := e.node.applied[len(e.node.applied)-1][0].Subnets[1].VMs[0].AV; p == nil || p.Mode != "front" {
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
	e.ctl.RecordNodeResult(context.Background(), store.Result{TID: 100, VM: "VM3", Kind: "av", Tenant: "alice", Doc: []byte(`{"mode": "front", "chunks": {"INFECTED": 1}}`)})
	if code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 200 || !strings.Contains(string(out), "INFECTED") {
		t.Fatalf("report: %d %s", code, out)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", b, nil); code != 404 {
		t.Fatalf("another tenant's report: %d", code)
	}
}

// fakeAVNode runs HyperAV for VM3 of domain 100 only.
type fakeAVNode struct {
	*fakeNode
	status *hyperav.Status
}

func (f *fakeAVNode) AVScan(context.Context, int, string, string) (*hyperav.ScanResult, error) {
	return nil, errors.New("not here")
}

func (f *fakeAVNode) AVIsolate(context.Context, int, string, string) (*hyperav.Isolation, error) {
	return nil, errors.New("not here")
}

func (f *fakeAVNode) AVStatus(tid int, vm string) (*hyperav.Status, error) {
	if tid != 100 || vm != "VM3" || f.status == nil {
		return nil, errors.New("no service")
	}
	return f.status, nil
}

// TestAVReportIsLive: while the node runs the VM's service the report is
// its live status (a scan or isolation shows at once, not at the next
// round); otherwise the last stored round; never another tenant's.
func TestAVReportIsLive(t *testing.T) {
	node := &fakeAVNode{fakeNode: &fakeNode{}}
	e := newEnvWith(t, node)
	a, b := e.tenant("alice"), e.tenant("bob")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 404 {
		t.Fatalf("report with neither a service nor a stored round: %d", code)
	}
	e.ctl.RecordNodeResult(context.Background(), store.Result{TID: 100, VM: "VM3", Kind: "av", Tenant: "alice", Doc: []byte(`{"mode": "front", "chunks": {"INFECTED": 0}, "epochs": 7}`)})
	if code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil); code != 200 || !strings.Contains(string(out), `"epochs": 7`) {
		t.Fatalf("stored report: %d %s", code, out)
	}
	node.status = &hyperav.Status{Mode: "front", Chunks: map[string]int{hyperav.Infected: 1}, Epochs: 8}
	code, out := e.do("GET", "/v1/domains/100/vms/VM3/av/report", a, nil)
	if code != 200 || !strings.Contains(string(out), `"epochs":8`) || !strings.Contains(string(out), `"INFECTED":1`) {
		t.Fatalf("live report: %d %s", code, out)
	}
	if code, _ := e.do("GET", "/v1/domains/100/vms/VM3/av/report", b, nil); code != 404 {
		t.Fatalf("another tenant's live report: %d", code)
	}
}
