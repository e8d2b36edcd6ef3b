package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store/bolt"
)

// env is a real server (the real handler on httptest) over a real bbolt
// store in a temporary directory, with tokens for each role.
type env struct {
	t      *testing.T
	url    string
	srv    *server.Server
	store  *bolt.Store
	audit  *audit.Log
	tokens map[string]string // operator, admin (biology), viewer (biology), geo-admin (geology)
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with a server config changed by edit.
func newEnvWith(t *testing.T, edit func(*server.Config)) *env {
	t.Helper()
	st, err := bolt.Open(t.TempDir(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al := audit.New(st)
	cfg := server.Config{Store: st, Audit: al}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e := &env{t: t, url: hs.URL, srv: srv, store: st, audit: al, tokens: map[string]string{}}
	ctx := t.Context()
	op, _, err := srv.IssueToken(ctx, auth.Principal{}, auth.Principal{Role: auth.Operator}, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["operator"] = op
	return e
}

// seed applies examples/university and makes tenant tokens.
func (e *env) seed() *env {
	e.t.Helper()
	set, err := v1.Load("../../examples/university")
	if err != nil {
		e.t.Fatal(err)
	}
	set.Policies = append(set.Policies, v1.Policy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindPolicy},
		Metadata: v1.ObjectMeta{Name: "site"},
	})
	if _, err := e.client("operator").ApplySet(e.t.Context(), set); err != nil {
		e.t.Fatal(err)
	}
	for name, p := range map[string]auth.Principal{
		"admin":     {Role: auth.TenantAdmin, Tenant: "biology"},
		"viewer":    {Role: auth.TenantViewer, Tenant: "biology"},
		"geo-admin": {Role: auth.TenantAdmin, Tenant: "geology"},
	} {
		tok, err := e.client("operator").CreateToken(e.t.Context(), string(p.Role), p.Tenant, name)
		if err != nil {
			e.t.Fatal(err)
		}
		e.tokens[name] = tok.Token
	}
	return e
}

func (e *env) client(who string) *client.Client {
	e.t.Helper()
	c, err := client.New(e.url, e.tokens[who])
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// response is a raw answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) error(t *testing.T) wire.Error {
	t.Helper()
	var we wire.Error
	if err := json.Unmarshal(r.body, &we); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return we
}

// do sends a raw request as who ("" for no token).
func (e *env) do(who, method, path string, body []byte) response {
	e.t.Helper()
	return e.doCtx(e.t.Context(), who, method, path, body, nil)
}

func (e *env) doCtx(ctx context.Context, who, method, path string, body []byte, hdr map[string]string) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if who != "" {
		tok, ok := e.tokens[who]
		if !ok {
			tok = who // a literal token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// get returns the stored JSON of an object, read as the operator.
func (e *env) get(path string) []byte {
	e.t.Helper()
	r := e.do("operator", "GET", path, nil)
	if r.status != 200 {
		e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return r.body
}

// lastAudit returns the newest audit entry.
func (e *env) lastAudit() audit.Entry {
	e.t.Helper()
	sum, err := e.audit.Verify(e.t.Context())
	if err != nil {
		e.t.Fatalf("audit verify: %v", err)
	}
	ents, err := e.audit.Entries(e.t.Context(), sum.Head.Seq-1, 1)
	if err != nil || len(ents) != 1 {
		e.t.Fatalf("audit entries: %v %v", ents, err)
	}
	return ents[0]
}

func workloadJSON(tenant, name string, replicas int) []byte {
	return []byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"` + name + `","tenant":"` + tenant +
		`"},"spec":{"image":"busybox:latest","replicas":` + itoa(replicas) + `,"resources":{"cpu":"100m","memory":"64Mi"}}}`)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
