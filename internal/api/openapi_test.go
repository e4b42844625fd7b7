package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"secaas/internal/inventory"
	"secaas/internal/node"
	"secaas/internal/tenant"
)

// TestResponsesMatchOpenAPI checks the OpenAPI document itself, then
// drives every route of the route table with a request that should
// succeed (as the admin or the owning tenant) and checks each real
// response, status and body, against the document's schemas.
func TestResponsesMatchOpenAPI(t *testing.T) {
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	e := newEnv(t)
	doc.Servers = openapi3.Servers{{URL: e.srv.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := e.owner("alice")
	if code, body := e.do("POST", "/v1/domains", a, table2Body(t)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	seen := map[string]int{}
	// call makes one request of route (its pattern filled in as path) that
	// must succeed, and checks request and response against the document.
	call := func(route, path, token string, body any) {
		t.Helper()
		method, _, _ := strings.Cut(route, " ")
		var rd []byte
		if body != nil {
			rd, _ = json.Marshal(body)
		}
		req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(rd))
		req.Header.Set("Authorization", "Bearer "+token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[route] = resp.StatusCode
		if resp.StatusCode >= 300 {
			t.Errorf("%s: %d %s", route, resp.StatusCode, out)
			return
		}
		vreq, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(rd))
		vreq.Header = req.Header
		r, params, err := router.FindRoute(vreq)
		if err != nil {
			t.Errorf("%s: not in the document: %v", route, err)
			return
		}
		in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: r,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s: the request does not match the document: %v", route, err)
		}
		if err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Body: io.NopCloser(bytes.NewReader(out)),
		}); err != nil {
			t.Errorf("%s: the response does not match the document: %v\n%s", route, err, out)
		}
	}
	// In an order where each call finds what it needs.
	call("GET /v1/tenants", "/v1/tenants", admin, nil)
	call("POST /v1/tenants", "/v1/tenants", admin, map[string]string{"id": "carol", "name": "Carol"})
	call("PUT /v1/inventory/ports/{port}", "/v1/inventory/ports/vm4", admin, inventory.Port{Name: "vm4", Tenant: "alice", VM: "guest4"})
	call("PUT /v1/inventory/ports/{port}", "/v1/inventory/ports/vm9", admin, inventory.Port{Name: "vm9", Tenant: "carol", Uplink: true})
	call("GET /v1/inventory/ports", "/v1/inventory/ports", admin, nil)
	call("GET /v1/inventory/ports", "/v1/inventory/ports", a, nil)
	call("GET /v1/inventory/ports/{port}", "/v1/inventory/ports/vm3", a, nil)
	call("DELETE /v1/inventory/ports/{port}", "/v1/inventory/ports/vm9", admin, nil)
	call("POST /v1/apply", "/v1/apply?dry_run=1", a, tenant.Policy{Domains: []tenant.Domain{table2Body(t)}})
	call("POST /v1/apply", "/v1/apply", a, tenant.Policy{Domains: []tenant.Domain{table2Body(t)}})
	call("GET /v1/domains", "/v1/domains", a, nil)
	call("GET /v1/domains/{tid}", "/v1/domains/100", a, nil)
	call("GET /v1/domains/{tid}/vms", "/v1/domains/100/vms", a, nil)
	call("GET /v1/domains/{tid}/acrs", "/v1/domains/100/acrs", a, nil)
	call("POST /v1/domains/{tid}/subnets", "/v1/domains/100/subnets", a, tenant.Subnet{Name: "subD3", CIDR: "10.3.0.0/24"})
	call("DELETE /v1/domains/{tid}/subnets/{subnet}", "/v1/domains/100/subnets/subD3", a, nil)
	d := table2Body(t)
	call("PUT /v1/domains/{tid}", "/v1/domains/100", a, d)
	call("POST /v1/domains/{tid}/subnets/{subnet}/vms", "/v1/domains/100/subnets/subD2/vms", a, tenant.VM{Name: "VM4", MAC: "02:00:00:00:00:44", IP: "192.168.1.44", Port: "vm4"})
	call("DELETE /v1/domains/{tid}/vms/{vm}", "/v1/domains/100/vms/VM4", a, nil)
	call("POST /v1/domains/{tid}/subnets/{subnet}/acrs", "/v1/domains/100/subnets/subD2/acrs", a, tenant.ACR{Priority: 4, Proto: "udp", Action: "pass"})
	call("POST /v1/domains/{tid}/acrs", "/v1/domains/100/acrs", a, map[string]any{"subnet": "subD1", "priority": 3, "action": "drop"})
	_, out := e.do("GET", "/v1/domains/100/acrs", a, nil)
	var acrs []subnetACR
	json.Unmarshal(out, &acrs)
	call("DELETE /v1/domains/{tid}/acrs/{id}", "/v1/domains/100/acrs/"+acrs[len(acrs)-1].ID, a, nil)
	call("POST /v1/domains/{tid}/check", "/v1/domains/100/check", a, map[string]any{"from": "VM1", "to": "VM3", "proto": "tcp", "dport": 22})
	call("PUT /v1/domains/{tid}/vms/{vm}/nad", "/v1/domains/100/vms/VM3/nad", a, tenant.NADPolicy{Window: "1s", History: 10})
	call("DELETE /v1/domains/{tid}/vms/{vm}/nad", "/v1/domains/100/vms/VM3/nad", a, nil)
	call("PUT /v1/domains/{tid}/vms/{vm}/vmi", "/v1/domains/100/vms/VM3/vmi", a, tenant.VMIPolicy{Interval: "2s"})
	e.result(node.Result{TID: 100, VM: "VM3", Kind: "vmi", Tenant: "alice",
		Doc: []byte(`{"kernel": "6.1.0", "processes": [], "hidden_processes": [], "modules": [], "hidden_modules": [], "took_ms": 1}`)})
	call("GET /v1/domains/{tid}/vms/{vm}/vmi/report", "/v1/domains/100/vms/VM3/vmi/report", a, nil)
	call("DELETE /v1/domains/{tid}/vms/{vm}/vmi", "/v1/domains/100/vms/VM3/vmi", a, nil)
	call("PUT /v1/domains/{tid}/vms/{vm}/kmon", "/v1/domains/100/vms/VM3/kmon", a,
		tenant.KMonPolicy{Rules: []tenant.KMonRule{{Syscalls: []int{0, 1, 2, 3}, Subject: "vim", Object: "/etc/hosts", Action: "record"}}})
	call("DELETE /v1/domains/{tid}/vms/{vm}/kmon", "/v1/domains/100/vms/VM3/kmon", a, nil)
	call("PUT /v1/domains/{tid}/vms/{vm}/av", "/v1/domains/100/vms/VM3/av", a, tenant.AVPolicy{Paths: []string{"/etc/x"}})
	e.result(node.Result{TID: 100, VM: "VM3", Kind: "av", Tenant: "alice",
		Doc: []byte(`{"at": "2026-01-01T00:00:00Z", "mode": "front", "chunks": {"CLEAN": 1}, "infected_ranges": [], "files": {}, "epochs": 1}`)})
	call("GET /v1/domains/{tid}/vms/{vm}/av/report", "/v1/domains/100/vms/VM3/av/report", a, nil)
	call("DELETE /v1/domains/{tid}/vms/{vm}/av", "/v1/domains/100/vms/VM3/av", a, nil)
	call("GET /v1/events", "/v1/events?limit=50&kind=vmi.", a, nil)
	call("GET /v1/events", "/v1/events", admin, nil)
	call("GET /v1/domains/{tid}/status", "/v1/domains/100/status", a, nil)
	call("GET /v1/hosts", "/v1/hosts", admin, nil)
	call("POST /v1/domains", "/v1/domains", admin, tenant.Domain{TID: 101, Name: "c", Tenant: "carol", Subnets: []tenant.Subnet{{Name: "s",
		VMs: []tenant.VM{{Name: "c1", MAC: "02:00:00:00:01:01", IP: "10.1.0.1", Port: "c1"}}}}})
	call("DELETE /v1/domains/{tid}", "/v1/domains/101", admin, nil)
	call("DELETE /v1/tenants/{id}", "/v1/tenants/carol", admin, nil)
	// Scan and isolate need a node that runs HyperAV: the live tests
	// (internal/agent, the demo) cover them.
	for _, r := range New(e.ctl, nil).Routes() {
		if _, ok := seen[r]; !ok && !strings.Contains(r, "/av/scan") && !strings.Contains(r, "/av/isolate") {
			t.Errorf("route %s was not exercised", r)
		}
	}
}
