package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/etcd"
	"rung.dev/rung/internal/store/etcd/etcdtest"
)

// TestStoreDown: with the server's etcd stopped, every endpoint answers
// 503 with Retry-After instead of hanging (DESIGN §11: within 5 s; the
// times are logged, the test only fails on a hang); started again, the
// same server serves again, and its planner plans again, without a
// restart.
func TestStoreDown(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	ctx := t.Context()
	st, err := etcd.Open(ctx, etcd.Config{Endpoints: cluster.Endpoints(), Prefix: "/storedown"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st, Audit: audit.New(store.WithDeadline(st, server.DefaultStoreTimeout))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() { stopRun(); <-done })

	e := &env{t: t, url: hs.URL, srv: srv, tokens: map[string]string{}}
	op, _, err := srv.IssueToken(ctx, auth.Principal{}, auth.Principal{Role: auth.Operator}, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["operator"] = op
	e.seed()

	type call struct{ who, method, path string }
	calls := []call{
		{"admin", "GET", "/v1/whoami"},
		{"operator", "GET", "/v1/workloads"},
		{"admin", "GET", "/v1/tenants/biology/workloads"},
		{"admin", "GET", "/v1/tenants/biology/workloads/notebook"},
		{"admin", "PUT", "/v1/tenants/biology/workloads/down"},
		{"admin", "DELETE", "/v1/tenants/biology/workloads/notebook"},
		{"operator", "GET", "/v1/tenants"},
		{"operator", "PUT", "/v1/tenants/chem"},
		{"operator", "GET", "/v1/topologies"},
		{"operator", "GET", "/v1/policies/site"},
		{"admin", "GET", "/v1/plan"},
		{"admin", "GET", "/v1/events"},
		{"operator", "GET", "/v1/tokens"},
		{"operator", "POST", "/v1/tokens"},
		{"operator", "DELETE", "/v1/tokens/0123456789abcdef"},
		{"operator", "POST", "/v1/tokens/admin/rotate"},
		{"operator", "GET", "/v1/nodes"},
		{"admin", "GET", "/v1/tenants/biology/workloads/notebook/logs"},
		{"operator", "GET", "/metrics"},
		{"", "GET", "/readyz"},
		{"rung_0123456789abcdef_" + strings.Repeat("0", 64), "GET", "/v1/whoami"},
	}
	body := func(c call) []byte {
		switch {
		case strings.HasSuffix(c.path, "/down"):
			return workloadJSON("biology", "down", 1)
		case strings.HasSuffix(c.path, "/chem"):
			return []byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"chem"},"spec":{}}`)
		case c.path == "/v1/tokens" && c.method == "POST":
			return []byte(`{"role":"operator"}`)
		}
		return nil
	}

	cluster.Kill(0)
	hc := &http.Client{Timeout: 30 * time.Second} // only a hang detector
	var (
		slowest time.Duration
		mu      sync.Mutex
		wg      sync.WaitGroup
	)
	for _, c := range calls { // all at once, as clients would
		wg.Go(func() {
			start := time.Now()
			r := rawDo(t, hc, hs.URL, e.tokens, c.who, c.method, c.path, body(c))
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, took)
			ra, _ := strconv.Atoi(r.header.Get("Retry-After"))
			if r.status != http.StatusServiceUnavailable || ra < 1 {
				t.Errorf("%s %s with etcd down: %d, Retry-After %q: %s", c.method, c.path, r.status, r.header.Get("Retry-After"), r.body)
			}
			t.Logf("%s %s: %d in %v", c.method, c.path, r.status, took.Round(time.Millisecond))
		})
	}
	wg.Wait()
	t.Logf("slowest answer with etcd down: %v (DESIGN §11: ≤ 5s)", slowest.Round(time.Millisecond))
	if r := rawDo(t, hc, hs.URL, e.tokens, "", "GET", "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("healthz (liveness) with etcd down: %d", r.status)
	}

	// etcd back: the same server serves again by itself.
	cluster.Restart(t, 0)
	back := time.Now()
	for {
		r := rawDo(t, hc, hs.URL, e.tokens, "admin", "GET", "/v1/whoami", nil)
		if r.status == http.StatusOK {
			break
		}
		if time.Since(back) > time.Minute {
			t.Fatalf("not serving a minute after etcd came back: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("serving again %v after etcd came back", time.Since(back).Round(time.Millisecond))
	for _, c := range calls[:11] {
		r := rawDo(t, hc, hs.URL, e.tokens, c.who, c.method, c.path, body(c))
		if r.status >= 500 {
			t.Errorf("%s %s after etcd came back: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// The planner watches again: a workload applied now gets placed.
	for {
		res, err := e.client("operator").Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		placed := false
		for _, p := range res.Placements {
			placed = placed || p.Workload == "biology/down"
		}
		if placed {
			break
		}
		if time.Since(back) > time.Minute {
			t.Fatalf("biology/down not planned a minute after etcd came back: %+v", res)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var w v1.Workload
	if _, err := e.client("admin").Get(ctx, client.Ref{Kind: v1.KindWorkload, Tenant: "biology", Name: "down"}, &w); err != nil {
		t.Errorf("workload applied after recovery: %v", err)
	}
}

// rawDo sends one request with a client of its own (who is a name in
// tokens or a literal token).
func rawDo(t *testing.T, hc *http.Client, base string, tokens map[string]string, who, method, path string, body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		tok, ok := tokens[who]
		if !ok {
			tok = who
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil { // called from several goroutines: no Fatal
		t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
}
