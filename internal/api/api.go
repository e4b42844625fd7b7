package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"secaas/internal/controller"
	"secaas/internal/inventory"
	"secaas/internal/store"
	"secaas/internal/tenant"
)

//go:embed openapi.json
var openAPI []byte

// MaxBody bounds request bodies.
const MaxBody = 1 << 20

// Server is the HTTP API.
type Server struct {
	c      *controller.Controller
	log    *slog.Logger
	mux    *http.ServeMux
	routes []string // "METHOD /path" of every authenticated route
}

// New returns the API handler.
func New(c *controller.Controller, log *slog.Logger) *Server {
	s := &Server{c: c, log: log, mux: http.NewServeMux()}
	s.register()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// No route: the mux answers 404, or 405 with Allow; in JSON.
		s.mux.ServeHTTP(&jsonMiss{ResponseWriter: w, r: r}, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// jsonMiss turns the mux's plain-text 404 and 405 into the API's JSON
// error, keeping its status and headers (Allow).
type jsonMiss struct {
	http.ResponseWriter
	r       *http.Request
	written bool
}

func (j *jsonMiss) WriteHeader(code int) {
	if j.written {
		return
	}
	j.written = true
	e := APIError{Status: code, Error: "not_found", Message: fmt.Sprintf("no route %s %s", j.r.Method, j.r.URL.Path)}
	if code == http.StatusMethodNotAllowed {
		e.Error, e.Message = "method_not_allowed", fmt.Sprintf("%s is not allowed on %s (allowed: %s)", j.r.Method, j.r.URL.Path, j.Header().Get("Allow"))
	}
	j.Header().Del("X-Content-Type-Options")
	j.Header().Set("Content-Type", "application/json")
	j.ResponseWriter.WriteHeader(code)
	json.NewEncoder(j.ResponseWriter).Encode(e)
}

func (j *jsonMiss) Write(b []byte) (int, error) {
	if !j.written {
		j.WriteHeader(http.StatusOK)
	}
	return len(b), nil // the mux's text is replaced by the JSON error
}

// Routes lists "METHOD /path" of every authenticated route.
func (s *Server) Routes() []string { return s.routes }

func (s *Server) handle(pattern string, h func(w http.ResponseWriter, r *http.Request, who controller.Caller) error) {
	s.routes = append(s.routes, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		who, err := s.c.Authenticate(r.Context(), bearer(r))
		if err == nil {
			r, err = withWait(r)
		}
		if err == nil {
			err = h(w, r, who)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// maxWait bounds ?wait=.
const maxWait = 5 * time.Minute

// withWait takes a change's ?wait=DURATION (how long to wait for the
// hosts to apply it; 0: not at all) out of the query into the context.
func withWait(r *http.Request) (*http.Request, error) {
	q := r.URL.Query()
	if !q.Has("wait") {
		return r, nil
	}
	if r.Method == http.MethodGet {
		return r, badRequest("query: wait is for changes, not reads")
	}
	vs := q["wait"]
	d, err := time.ParseDuration(vs[0])
	if len(vs) != 1 || err != nil || d < 0 || d > maxWait {
		return r, badRequest("query: wait=DURATION (0 to 5m, e.g. 10s)")
	}
	q.Del("wait")
	r2 := r.WithContext(controller.WithWait(r.Context(), d))
	u := *r.URL
	u.RawQuery = q.Encode()
	r2.URL = &u
	return r2, nil
}

// etag is a domain revision as an HTTP entity tag.
func etag(rev int) string { return `"` + strconv.Itoa(rev) + `"` }

// subnetACR is an ACR with the subnet whose set holds it.
type subnetACR struct {
	tenant.ACR
	Subnet string `json:"subnet"`
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header
// (the scheme is case-insensitive, RFC 7235); any other header gives "",
// which no caller has.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func (s *Server) register() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	s.handle("POST /v1/tenants", s.createTenant)
	s.handle("GET /v1/tenants", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		ts, err := s.c.Tenants(r.Context(), who)
		return reply(w, http.StatusOK, ts, err)
	})
	s.handle("DELETE /v1/tenants/{id}", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		return noContent(w, s.c.DeleteTenant(r.Context(), who, r.PathValue("id")))
	})
	s.handle("GET /v1/inventory/ports", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		ps, err := s.c.Ports(r.Context(), who)
		if ps == nil {
			ps = []inventory.Port{}
		}
		return reply(w, http.StatusOK, ps, err)
	})
	s.handle("GET /v1/inventory/ports/{port}", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		p, err := s.c.Port(r.Context(), who, r.PathValue("port"))
		return reply(w, http.StatusOK, p, err)
	})
	s.handle("PUT /v1/inventory/ports/{port}", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		var p inventory.Port
		if err := decode(r, &p); err != nil {
			return err
		}
		if p.Name == "" {
			p.Name = r.PathValue("port")
		}
		if p.Name != r.PathValue("port") {
			return fmt.Errorf("name %q in the body differs from %q in the path: %w", p.Name, r.PathValue("port"), controller.ErrInvalid)
		}
		p, err := s.c.PutPort(r.Context(), who, p)
		return reply(w, http.StatusOK, p, err)
	})
	s.handle("DELETE /v1/inventory/ports/{port}", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		return noContent(w, s.c.DeletePort(r.Context(), who, r.PathValue("port")))
	})
	s.handle("POST /v1/apply", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		dry := false
		for k, vs := range r.URL.Query() {
			if k != "dry_run" || len(vs) != 1 || (vs[0] != "1" && vs[0] != "true" && vs[0] != "0" && vs[0] != "false") {
				return badRequest("query: only dry_run=1|0 is known")
			}
			dry = vs[0] == "1" || vs[0] == "true"
		}
		var p tenant.Policy
		if err := decode(r, &p); err != nil {
			return err
		}
		plan, err := s.c.ApplyPolicy(r.Context(), who, p.Domains, dry)
		return reply(w, http.StatusOK, plan, err)
	})
	s.handle("GET /v1/domains", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		ds, err := s.c.Domains(r.Context(), who)
		if ds == nil {
			ds = []tenant.Domain{}
		}
		return reply(w, http.StatusOK, ds, err)
	})
	s.handle("POST /v1/domains", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		var d tenant.Domain
		if err := decode(r, &d); err != nil {
			return err
		}
		d, err := s.c.CreateDomain(r.Context(), who, d)
		return reply(w, http.StatusCreated, d, err)
	})
	s.handle("GET /v1/domains/{tid}/status", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		st, err := s.c.DomainStatus(r.Context(), who, tid)
		return reply(w, http.StatusOK, st, err)
	}))
	s.handle("GET /v1/hosts", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		hs, err := s.c.Hosts(r.Context(), who)
		return reply(w, http.StatusOK, hs, err)
	})
	s.handle("GET /v1/domains/{tid}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		rev, doc, err := s.c.DomainDoc(r.Context(), who, tid)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(rev))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, err = w.Write(doc)
		return err
	}))
	s.handle("PUT /v1/domains/{tid}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var d tenant.Domain
		if err := decode(r, &d); err != nil {
			return err
		}
		d, err := s.c.ReplaceDomain(r.Context(), who, tid, d)
		if err == nil {
			w.Header().Set("ETag", etag(d.Revision))
		}
		return reply(w, http.StatusOK, d, err)
	}))
	s.handle("DELETE /v1/domains/{tid}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		return noContent(w, s.c.DeleteDomain(r.Context(), who, tid))
	}))
	s.handle("POST /v1/domains/{tid}/subnets", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var sn tenant.Subnet
		if err := decode(r, &sn); err != nil {
			return err
		}
		d, err := s.c.AddSubnet(r.Context(), who, tid, sn)
		return reply(w, http.StatusCreated, d, err)
	}))
	s.handle("DELETE /v1/domains/{tid}/subnets/{subnet}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		_, err := s.c.DeleteSubnet(r.Context(), who, tid, r.PathValue("subnet"))
		return noContent(w, err)
	}))
	s.handle("GET /v1/domains/{tid}/vms", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		d, err := s.c.Domain(r.Context(), who, tid)
		type row struct {
			tenant.VM
			Subnet string `json:"subnet"`
		}
		rows := []row{}
		for _, sn := range d.Subnets {
			for _, vm := range sn.VMs {
				rows = append(rows, row{vm, sn.Name})
			}
		}
		return reply(w, http.StatusOK, rows, err)
	}))
	s.handle("POST /v1/domains/{tid}/subnets/{subnet}/vms", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var vm tenant.VM
		if err := decode(r, &vm); err != nil {
			return err
		}
		vm, err := s.c.AddVM(r.Context(), who, tid, r.PathValue("subnet"), vm)
		return reply(w, http.StatusCreated, vm, err)
	}))
	s.handle("DELETE /v1/domains/{tid}/vms/{vm}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		return noContent(w, s.c.DeleteVM(r.Context(), who, tid, r.PathValue("vm")))
	}))
	policyRoutes(s, "nad", s.c.SetNAD)
	policyRoutes(s, "vmi", s.c.SetVMI)
	policyRoutes(s, "kmon", s.c.SetKMon)
	s.handle("GET /v1/domains/{tid}/vms/{vm}/vmi/report", s.latestResult("vmi"))
	policyRoutes(s, "av", s.c.SetAV)
	s.handle("POST /v1/domains/{tid}/vms/{vm}/av/scan", s.avPath(func(ctx context.Context, who controller.Caller, tid int, vm, path string) (any, error) {
		return s.c.AVScan(ctx, who, tid, vm, path)
	}))
	s.handle("POST /v1/domains/{tid}/vms/{vm}/av/isolate", s.avPath(func(ctx context.Context, who controller.Caller, tid int, vm, path string) (any, error) {
		return s.c.AVIsolate(ctx, who, tid, vm, path)
	}))
	s.handle("GET /v1/domains/{tid}/vms/{vm}/av/report", s.result(func(ctx context.Context, who controller.Caller, tid int, vm string) (store.Result, error) {
		return s.c.AVReport(ctx, who, tid, vm)
	}))
	s.handle("GET /v1/domains/{tid}/acrs", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		d, err := s.c.Domain(r.Context(), who, tid)
		rows := []subnetACR{}
		for _, sn := range d.Subnets {
			for _, a := range sn.ACRs {
				rows = append(rows, subnetACR{a, sn.Name})
			}
		}
		return reply(w, http.StatusOK, rows, err)
	}))
	// The ACRs' one path: listed, created (the subnet in the body) and
	// deleted under /v1/domains/{tid}/acrs.
	s.handle("POST /v1/domains/{tid}/acrs", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var a subnetACR
		if err := decode(r, &a); err != nil {
			return err
		}
		if a.Subnet == "" {
			return badRequest("subnet is required")
		}
		acr, err := s.c.AddACR(r.Context(), who, tid, a.Subnet, a.ACR)
		return reply(w, http.StatusCreated, subnetACR{acr, a.Subnet}, err)
	}))
	s.handle("POST /v1/domains/{tid}/subnets/{subnet}/acrs", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var a tenant.ACR
		if err := decode(r, &a); err != nil {
			return err
		}
		a, err := s.c.AddACR(r.Context(), who, tid, r.PathValue("subnet"), a)
		return reply(w, http.StatusCreated, a, err)
	}))
	s.handle("DELETE /v1/domains/{tid}/acrs/{id}", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		return noContent(w, s.c.DeleteACR(r.Context(), who, tid, r.PathValue("id")))
	}))
	s.handle("POST /v1/domains/{tid}/check", s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var req controller.CheckRequest
		if err := decode(r, &req); err != nil {
			return err
		}
		v, err := s.c.Check(r.Context(), who, tid, req)
		return reply(w, http.StatusOK, v, err)
	}))
	s.handle("GET /v1/events", func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		q, follow, err := eventQuery(r, time.Now())
		if err != nil {
			return err
		}
		if follow {
			return s.follow(w, r, who, q)
		}
		ev, err := s.c.Events(r.Context(), who, q)
		return reply(w, http.StatusOK, ev, err)
	})
}

// eventQuery reads GET /v1/events' parameters: limit (1..1000, default
// 100), after (an event id), since (RFC 3339 time, or a duration back
// from now such as 15m), kind (exact, or a prefix ending in "."), vm, and
// follow (stream, oldest first). Anything else, or a bad value, is 400.
func eventQuery(r *http.Request, now time.Time) (store.EventQuery, bool, error) {
	q := store.EventQuery{Limit: 100}
	follow := false
	for k, vs := range r.URL.Query() {
		if len(vs) != 1 {
			return q, false, badRequest("query parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > controller.MaxEvents {
				return q, false, badRequest("limit %q is not a number in 1..%d", v, controller.MaxEvents)
			}
			q.Limit = n
		case "after":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, false, badRequest("after %q is not an event id", v)
			}
			q.After = n
		case "since":
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				q.Since = t
			} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
				q.Since = now.Add(-d)
			} else {
				return q, false, badRequest("since %q is neither an RFC 3339 time nor a positive duration", v)
			}
		case "kind":
			if !eventKindRE.MatchString(v) {
				return q, false, badRequest("kind %q is not an event kind (e.g. vmi.hidden_process, or vmi. for all of vmi)", v)
			}
			q.Kind = v
		case "vm":
			if !tenant.ValidName(v) {
				return q, false, badRequest("vm %q is not a VM name", v)
			}
			q.VM = v
		case "follow":
			if v != "1" && v != "true" {
				return q, false, badRequest("follow %q: want 1 or true", v)
			}
			follow = true
		default:
			return q, false, badRequest("unknown query parameter %q (limit, after, since, kind, vm, follow)", k)
		}
	}
	return q, follow, nil
}

var eventKindRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$`)

// follow streams the caller's events that match q as Server-Sent Events
// (one JSON event per "data:" line), oldest first, until the client goes
// away.
func (s *Server) follow(w http.ResponseWriter, r *http.Request, who controller.Caller, q store.EventQuery) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return badRequest("streaming is not supported on this connection")
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl.Flush()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	q.Oldest, q.Limit = true, controller.MaxEvents
	for {
		ev, err := s.c.Events(r.Context(), who, q)
		if err != nil {
			return nil // the stream has started: nothing to report but the end
		}
		for _, e := range ev {
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.ID, b)
			q.After = e.ID
		}
		if len(ev) > 0 {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	tn, tok, err := s.c.CreateTenant(r.Context(), who, req.ID, req.Name)
	return reply(w, http.StatusCreated, map[string]any{"id": tn.ID, "name": tn.Name, "created_at": tn.CreatedAt, "token": tok}, err)
}

// policyRoutes serves a VM's service policy: PUT
// /v1/domains/{tid}/vms/{vm}/SERVICE sets it (strict JSON), DELETE clears it.
func policyRoutes[P any](s *Server, service string, set func(ctx context.Context, who controller.Caller, tid int, vm string, p *P) error) {
	path := "/v1/domains/{tid}/vms/{vm}/" + service
	s.handle("PUT "+path, s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var p P
		if err := decode(r, &p); err != nil {
			return err
		}
		return noContent(w, set(r.Context(), who, tid, r.PathValue("vm"), &p))
	}))
	s.handle("DELETE "+path, s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		return noContent(w, set(r.Context(), who, tid, r.PathValue("vm"), nil))
	}))
}

// latestResult serves a VM's latest stored result of a kind (vmi, av) as
// the node reported it.
func (s *Server) latestResult(kind string) func(http.ResponseWriter, *http.Request, controller.Caller) error {
	return s.result(func(ctx context.Context, who controller.Caller, tid int, vm string) (store.Result, error) {
		return s.c.Result(ctx, who, tid, vm, kind)
	})
}

// result serves a VM's result document.
func (s *Server) result(get func(ctx context.Context, who controller.Caller, tid int, vm string) (store.Result, error)) func(http.ResponseWriter, *http.Request, controller.Caller) error {
	return s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		res, err := get(r.Context(), who, tid, r.PathValue("vm"))
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Last-Modified", res.Time.UTC().Format(http.TimeFormat))
		_, err = w.Write(res.Doc)
		return err
	})
}

// avPath serves a HyperAV request on one file ({"path": ...}).
func (s *Server) avPath(do func(ctx context.Context, who controller.Caller, tid int, vm, path string) (any, error)) func(http.ResponseWriter, *http.Request, controller.Caller) error {
	return s.withTID(func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error {
		var in struct {
			Path string `json:"path"`
		}
		if err := decode(r, &in); err != nil {
			return err
		}
		res, err := do(r.Context(), who, tid, r.PathValue("vm"), in.Path)
		return reply(w, http.StatusOK, res, err)
	})
}

func (s *Server) withTID(h func(w http.ResponseWriter, r *http.Request, who controller.Caller, tid int) error) func(http.ResponseWriter, *http.Request, controller.Caller) error {
	return func(w http.ResponseWriter, r *http.Request, who controller.Caller) error {
		tid, err := strconv.Atoi(r.PathValue("tid"))
		if err != nil || tid < tenant.MinTID || tid > tenant.MaxTID {
			return badRequest("tid %q is not a number in %d..%d", r.PathValue("tid"), tenant.MinTID, tenant.MaxTID)
		}
		// If-Match: "REVISION" makes a change apply only to that revision
		// of the domain (optimistic concurrency); "*" is any.
		if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" && im != "*" {
			rev, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(im, "W/"), `"`))
			if err != nil || rev < 1 {
				return badRequest("If-Match %q is not a domain revision (the ETag of GET /v1/domains/%d)", im, tid)
			}
			r = r.WithContext(controller.WithIfMatch(r.Context(), rev))
		}
		return h(w, r, who, tid)
	}
}

// requestError is a malformed request.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error { return &requestError{fmt.Sprintf(format, a...)} }

// decode reads exactly one JSON value with no unknown fields.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return badRequest("request body exceeds %d bytes", MaxBody)
		}
		return badRequest("read body: %v", err)
	}
	if err := tenant.DecodeStrictJSON(b, v); err != nil {
		return badRequest("malformed JSON: %v", err)
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v any, err error) error {
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// APIError is the body of every error response.
type APIError struct {
	Status  int    `json:"status"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// writeError is the one place errors become statuses and user-safe text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var re *requestError
	e := APIError{Status: http.StatusInternalServerError, Error: "internal", Message: "internal error"}
	switch {
	case errors.As(err, &re):
		e = APIError{http.StatusBadRequest, "bad_request", re.msg}
	case errors.Is(err, controller.ErrUnauthorized):
		e = APIError{http.StatusUnauthorized, "unauthorized", err.Error()}
		w.Header().Set("WWW-Authenticate", `Bearer realm="secaas"`)
	case errors.Is(err, controller.ErrForbidden):
		e = APIError{http.StatusForbidden, "forbidden", err.Error()}
	case errors.Is(err, controller.ErrInvalid):
		e = APIError{http.StatusUnprocessableEntity, "invalid", err.Error()}
	case errors.Is(err, controller.ErrNotFound):
		e = APIError{http.StatusNotFound, "not_found", err.Error()}
	case errors.Is(err, controller.ErrConflict):
		e = APIError{http.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, controller.ErrPrecondition):
		e = APIError{http.StatusPreconditionFailed, "precondition_failed", err.Error()}
	case errors.Is(err, controller.ErrNode):
		e = APIError{http.StatusBadGateway, "node_failed", err.Error()}
	case errors.Is(err, controller.ErrApply):
		e = APIError{http.StatusBadGateway, "apply_failed", "the change is stored, but a host refused it and keeps enforcing its previous state; the status of the domain says more"}
		if who, _ := s.c.Authenticate(r.Context(), bearer(r)); who.Admin {
			e.Message = err.Error()
		}
		s.log.Error("apply failed", "path", r.URL.Path, "err", err)
	case errors.Is(err, controller.ErrPending):
		e = APIError{http.StatusAccepted, "pending", err.Error()}
	default:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(e)
}
