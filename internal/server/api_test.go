package server_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/sign"
)

// TestApplyIdempotent: the same object twice writes nothing the second
// time; a change writes a new revision; both are audited once.
func TestApplyIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	path := "/v1/tenants/biology/workloads/extra"
	body := workloadJSON("biology", "extra", 2)
	var first, second, third wire.ApplyResult
	for _, step := range []struct {
		body   []byte
		status int
		out    *wire.ApplyResult
	}{{body, made, &first}, {body, ok, &second}, {workloadJSON("biology", "extra", 3), ok, &third}} {
		r := e.do("admin", "PUT", path, step.body)
		if r.status != step.status {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
		json.Unmarshal(r.body, step.out)
	}
	if first.Result != wire.Created || second.Result != wire.Unchanged || third.Result != wire.Updated {
		t.Errorf("results: %s, %s, %s", first.Result, second.Result, third.Result)
	}
	if second.Revision != first.Revision {
		t.Errorf("unchanged apply moved the revision: %d → %d", first.Revision, second.Revision)
	}
	if third.Revision <= first.Revision {
		t.Errorf("update did not get a new revision: %d → %d", first.Revision, third.Revision)
	}
	// YAML of the same object, fields in another order, with defaults
	// spelled out, is the same object.
	yaml := "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {tenant: biology, name: extra}\n" +
		"spec:\n  resources: {memory: 64Mi, cpu: 0.1}\n  replicas: 3\n  image: busybox:latest\n  dataClass: internal\n"
	r := e.doCtx(t.Context(), "admin", "PUT", path, []byte(yaml), map[string]string{"Content-Type": "application/yaml"})
	var res wire.ApplyResult
	json.Unmarshal(r.body, &res)
	if r.status != ok || res.Result != wire.Unchanged || res.Revision != third.Revision {
		t.Errorf("equivalent YAML: %d %s", r.status, r.body)
	}
	if rev := r.header.Get(wire.RevisionHeader); rev != "" {
		t.Errorf("apply answered a revision header %q", rev)
	}
	g := e.do("admin", "GET", path, nil)
	if g.header.Get(wire.RevisionHeader) != itoa(int(third.Revision)) {
		t.Errorf("GET revision %q, want %d", g.header.Get(wire.RevisionHeader), third.Revision)
	}
}

// TestHostileInput: huge bodies, bad JSON and YAML, path tricks, names
// that are not names, mismatched bodies, unknown fields, wrong methods.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	huge := append([]byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"`),
		bytes.Repeat([]byte("a"), 2<<20)...)
	huge = append(huge, `"}}`...)
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	bomb := "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	for _, tc := range []struct {
		name, method, path string
		who                string
		body               []byte
		ctype              string
		status             int
		code, contains     string
	}{
		{"huge body", "PUT", "/v1/tenants/biology/workloads/x", "admin", huge, "", 413, wire.CodeTooLarge, "exceeds"},
		{"bad json", "PUT", "/v1/tenants/biology/workloads/x", "admin", []byte(`{"apiVersion": "rung.dev/v1",`), "", 400, wire.CodeInvalid, ""},
		{"deep json", "PUT", "/v1/tenants/biology/workloads/x", "admin", []byte(deep), "", 400, wire.CodeInvalid, ""},
		{"yaml alias bomb", "PUT", "/v1/tenants/biology/workloads/x", "admin", []byte(bomb), "application/yaml", 400, wire.CodeInvalid, ""},
		{"unknown field", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"busybox:latest","replica":2}}`), "", 400, wire.CodeInvalid, "spec.replica"},
		{"invalid field", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"busybox:latest","dataClass":"secret"}}`), "", 422, wire.CodeInvalid, "spec.dataClass"},
		{"unknown level", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"busybox:latest","spread":[{"level":"rakc","minDomains":2}]}}`), "", 422, wire.CodeInvalid, `unknown level "rakc"`},
		{"two objects", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte("apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: x, tenant: biology}\n---\napiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: y, tenant: biology}\n"),
			"", 400, wire.CodeInvalid, "exactly one"},
		{"wrong kind", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"x"}}`), "", 400, wire.CodeInvalid, "is a Tenant"},
		{"name mismatch", "PUT", "/v1/tenants/biology/workloads/x", "admin", workloadJSON("biology", "y", 1), "", 400, wire.CodeInvalid, "does not match"},
		{"tenant mismatch (other in body)", "PUT", "/v1/tenants/biology/workloads/x", "admin", workloadJSON("geology", "x", 1), "", 400, wire.CodeInvalid, "does not match"},
		{"other tenant in path", "PUT", "/v1/tenants/geology/workloads/x", "admin", workloadJSON("biology", "x", 1), "", 404, wire.CodeNotFound, "not found"},
		{"traversal in name", "GET", "/v1/tenants/biology/workloads/..%2F..%2Ftokens", "admin", nil, "", 400, wire.CodeInvalid, "not a valid name"},
		{"encoded slash in tenant", "GET", "/v1/tenants/geology%2Fx/workloads", "admin", nil, "", 400, wire.CodeInvalid, "not a valid name"},
		{"upper case name", "GET", "/v1/tenants/Biology", "admin", nil, "", 400, wire.CodeInvalid, "DNS label"},
		{"long name", "GET", "/v1/tenants/" + strings.Repeat("a", 300), "admin", nil, "", 400, wire.CodeInvalid, "DNS label"},
		{"control chars", "GET", "/v1/tenants/a%00b", "admin", nil, "", 400, wire.CodeInvalid, "not a valid name"},
		{"media type", "PUT", "/v1/tenants/biology/workloads/x", "admin", workloadJSON("biology", "x", 1), "application/xml", 415, wire.CodeMediaType, "application/json"},
		{"no token", "GET", "/v1/workloads", "", nil, "", 401, wire.CodeUnauthenticated, "--token"},
		{"bad token", "GET", "/v1/workloads", "rung_0123456789abcdef_" + strings.Repeat("0", 64), nil, "", 401, wire.CodeUnauthenticated, "invalid"},
		{"garbage token", "GET", "/v1/workloads", "hello", nil, "", 401, wire.CodeUnauthenticated, "invalid"},
		{"wrong method", "POST", "/v1/tenants/biology", "admin", nil, "", 405, wire.CodeMethod, "GET, PUT, DELETE"},
		{"no endpoint", "GET", "/v2/things", "admin", nil, "", 404, wire.CodeNotFound, "/v1/"},
		{"token by tenant", "POST", "/v1/tokens", "admin", []byte(`{"role":"operator"}`), "", 403, wire.CodeForbidden, "operator"},
		{"bad role", "POST", "/v1/tokens", "operator", []byte(`{"role":"root"}`), "", 400, wire.CodeInvalid, "tenant-admin"},
		{"token unknown field", "POST", "/v1/tokens", "operator", []byte(`{"role":"operator","admin":true}`), "", 400, wire.CodeInvalid, "unknown field"},
		{"policy CEL error", "PUT", "/v1/policies/bad", "operator",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Policy","metadata":{"name":"bad"},"spec":{"rules":[{"name":"r","when":"attacker.tenant.nme ==","require":"vm"}]}}`),
			"", 422, wire.CodeInvalid, "do not compile"},
		{"duplicate rule across policies", "PUT", "/v1/policies/dup", "operator",
			[]byte("apiVersion: rung.dev/v1\nkind: Policy\nmetadata: {name: dup}\nspec:\n  rules: [{name: r1, when: 'true', require: vm}, {name: r1, when: 'true', require: vm}]\n"),
			"application/yaml", 422, wire.CodeInvalid, "line 5: spec.rules[1].name"},
		{"topology bad host", "PUT", "/v1/topologies/t2", "operator",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Topology","metadata":{"name":"t2"},"spec":{"nodes":[{"name":"v1","host":"nohost","capacity":{"cpu":1}}]}}`),
			"", 422, wire.CodeInvalid, `node "nohost" does not exist`},
		{"topology node name clash", "PUT", "/v1/topologies/t3", "operator",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Topology","metadata":{"name":"t3"},"spec":{"nodes":[{"name":"h1","capacity":{"cpu":1}}]}}`),
			"", 422, wire.CodeInvalid, `node "h1" is also defined`},
		{"cross-tenant affinity", "PUT", "/v1/tenants/biology/workloads/x", "admin",
			[]byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"busybox:latest","affinity":[{"tenant":"geology","op":"!=","level":"host"}]}}`),
			"", 403, wire.CodeForbidden, "spec.affinity[0].tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.ctype != "" {
				hdr["Content-Type"] = tc.ctype
			}
			r := e.doCtx(t.Context(), tc.who, tc.method, tc.path, tc.body, hdr)
			if r.status != tc.status {
				t.Fatalf("got %d %.500s, want %d", r.status, r.body, tc.status)
			}
			we := r.error(t)
			if we.Code != tc.code || !strings.Contains(we.Message+strings.Join(we.Details, "\n"), tc.contains) {
				t.Errorf("got %+v, want code %s mentioning %q", we, tc.code, tc.contains)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
			}
			for _, leak := range []string{"bolt", "store.db", "/workloads/", "/tenants/biology", "goroutine", ".go:"} {
				if strings.Contains(we.Message, leak) && !strings.Contains(tc.path, leak) {
					t.Errorf("message leaks %q: %s", leak, we.Message)
				}
			}
		})
	}
}

// TestQuota: a tenant's workloads may not ask for more than its quota,
// and the error says by how much and what to change.
func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	// biology: quota replicas 50, cpu 32; sequencer 3×2 + notebook 1×0.5 = 6.5 cpu, 4 replicas.
	r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/big", []byte(
		`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"big","tenant":"biology"},"spec":{"image":"busybox:latest","replicas":10,"resources":{"cpu":"3"}}}`))
	if r.status != deny {
		t.Fatalf("over cpu quota: %d %s", r.status, r.body)
	}
	we := r.error(t)
	if we.Code != wire.CodeQuota || !strings.Contains(we.Message, "cpu 36500m > quota 32") || !strings.Contains(we.Message, "spec.resources.cpu") {
		t.Errorf("quota message: %+v", we)
	}
	if a := e.lastAudit(); a.Decision != "deny" || !strings.Contains(string(a.Details), "quota_exceeded") {
		t.Errorf("quota denial not audited: %+v", a)
	}
	r = e.do("admin", "PUT", "/v1/tenants/biology/workloads/many", workloadJSON("biology", "many", 47))
	if r.status != deny || !strings.Contains(string(r.body), "replicas 51 > quota 50") {
		t.Fatalf("over replica quota: %d %s", r.status, r.body)
	}
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/many", workloadJSON("biology", "many", 46)); r.status != made {
		t.Fatalf("at quota: %d %s", r.status, r.body)
	}
	// Updating a workload counts it once, not twice.
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/many", workloadJSON("biology", "many", 45)); r.status != ok {
		t.Fatalf("shrink at quota: %d %s", r.status, r.body)
	}
}

// TestPlanView: the operator sees the whole plan in the `rung plan -o
// json` shape; a tenant sees its own replicas with no other tenant named.
func TestPlanView(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	var all, bio scheduler.Result
	for who, out := range map[string]*scheduler.Result{"operator": &all, "admin": &bio} {
		r := e.do(who, "GET", "/v1/plan", nil)
		if r.status != ok {
			t.Fatalf("plan as %s: %d %s", who, r.status, r.body)
		}
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatal(err)
		}
		if who != "operator" && strings.Contains(string(r.body), "geology") {
			t.Errorf("tenant plan names another tenant: %s", r.body)
		}
	}
	if len(all.Placements) != 7 || len(all.Unplaced) != 0 {
		t.Errorf("operator plan: %d placed, %d unplaced: %+v", len(all.Placements), len(all.Unplaced), all)
	}
	if len(bio.Placements) != 4 {
		t.Errorf("biology plan: %+v", bio)
	}
	for _, p := range bio.Placements {
		if !strings.HasPrefix(p.Workload, "biology/") {
			t.Errorf("foreign placement %+v", p)
		}
	}
	// Placements stay put when an unrelated workload changes.
	if r := e.do("geo-admin", "PUT", "/v1/tenants/geology/workloads/more", workloadJSON("geology", "more", 2)); r.status != made {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	var again scheduler.Result
	json.Unmarshal(e.do("operator", "GET", "/v1/plan", nil).body, &again)
	where := map[string]string{}
	for _, p := range again.Placements {
		where[p.Workload+"#"+itoa(p.Replica)] = p.Node
	}
	for _, p := range all.Placements {
		if n := where[p.Workload+"#"+itoa(p.Replica)]; n != p.Node {
			t.Errorf("%s[%d] moved from %s to %s", p.Workload, p.Replica, p.Node, n)
		}
	}
	if len(again.Placements) != 9 {
		t.Errorf("after apply: %d placements", len(again.Placements))
	}
}

// TestEvents: changes and denials are events; tenants see their own.
func TestEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	e.do("admin", "GET", "/v1/tenants/geology/workloads/rocks", nil) // a denial about geology
	e.do("admin", "PUT", "/v1/tenants/biology/workloads/extra", workloadJSON("biology", "extra", 1))
	events := func(who string) []wire.Event {
		r := e.do(who, "GET", "/v1/events?limit=1000", nil)
		if r.status != ok {
			t.Fatalf("events: %d %s", r.status, r.body)
		}
		var ev wire.Events
		json.Unmarshal(r.body, &ev)
		return ev.Events
	}
	all := events("operator")
	var sawDenial, sawApply bool
	for _, ev := range all {
		sawDenial = sawDenial || ev.Result == wire.CodeNotFound && ev.Tenant == "geology"
		sawApply = sawApply || ev.Action == "apply" && ev.Name == "extra" && ev.Result == wire.Created
	}
	if !sawDenial || !sawApply {
		t.Errorf("operator events miss the denial (%v) or the apply (%v): %+v", sawDenial, sawApply, all)
	}
	// geology never learns that biology probed it; biology sees its own.
	for _, ev := range events("geo-admin") {
		if ev.Tenant != "geology" || ev.ActorTenant == "biology" {
			t.Errorf("geology sees %+v", ev)
		}
	}
	bio := events("viewer")
	if len(bio) == 0 {
		t.Error("biology sees no events")
	}
	for _, ev := range bio {
		if ev.Tenant != "biology" {
			t.Errorf("biology sees %+v", ev)
		}
	}
	// Paging.
	r := e.do("operator", "GET", "/v1/events?after=2&limit=1", nil)
	var page wire.Events
	json.Unmarshal(r.body, &page)
	if len(page.Events) != 1 || page.Events[0].Seq != 3 || page.Next != 3 {
		t.Errorf("page: %+v", page)
	}
	if r := e.do("operator", "GET", "/v1/events?limit=0", nil); r.status != 400 {
		t.Errorf("limit=0: %d", r.status)
	}
	// The latest events, oldest first.
	var tail wire.Events
	json.Unmarshal(e.do("operator", "GET", "/v1/events?tail&limit=2", nil).body, &tail)
	last := all[len(all)-1].Seq
	if len(tail.Events) != 2 || tail.Events[0].Seq != last-1 || tail.Events[1].Seq != last || tail.Next != last {
		t.Errorf("tail: %+v (last %d)", tail, last)
	}
	var bioTail wire.Events
	json.Unmarshal(e.do("admin", "GET", "/v1/events?tail&limit=1000", nil).body, &bioTail)
	if len(bioTail.Events) != len(bio) {
		t.Errorf("biology tail %d events, forward %d", len(bioTail.Events), len(bio))
	}
	for _, ev := range bioTail.Events {
		if ev.Tenant != "biology" {
			t.Errorf("biology tail sees %+v", ev)
		}
	}
	if r := e.do("operator", "GET", "/v1/events?tail&after=3", nil); r.status != 400 {
		t.Errorf("tail and after: %d", r.status)
	}
}

// TestAuditChain: every change is in a chain that verifies, in the same
// transaction as the change (the entry's revision is the object's).
func TestAuditChain(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/extra", workloadJSON("biology", "extra", 1))
	var res wire.ApplyResult
	json.Unmarshal(r.body, &res)
	a := e.lastAudit()
	if a.Action != "apply" || a.Object != "Workload/biology/extra" || a.Tenant != "biology" {
		t.Fatalf("last entry %+v", a)
	}
	head, err := e.store.Get(t.Context(), "/audit/head")
	if err != nil {
		t.Fatal(err)
	}
	if head.Revision != res.Revision {
		t.Errorf("audit head at revision %d, change at %d: not one transaction", head.Revision, res.Revision)
	}
	sum, err := e.audit.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// 1 operator token + 4 tenants/topology/policy + 4 workloads + 3 tokens + 1 apply.
	if sum.Entries < 13 {
		t.Errorf("only %d audit entries", sum.Entries)
	}
}

// TestDeleteRules: deleting what others depend on is refused with the
// reason; deleting in order works.
func TestDeleteRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	r := e.do("operator", "DELETE", "/v1/tenants/biology", nil)
	if r.status != busy || !strings.Contains(r.error(t).Message, "notebook, sequencer") {
		t.Fatalf("delete tenant in use: %d %s", r.status, r.body)
	}
	// A topology that declares a level a workload spreads over.
	topo := `{"apiVersion":"rung.dev/v1","kind":"Topology","metadata":{"name":"extra"},"spec":{"levels":["building"],"nodes":[{"name":"b1","domains":{"building":"main"},"capacity":{"cpu":4,"memory":"8Gi"}}]}}`
	if r := e.do("operator", "PUT", "/v1/topologies/extra", []byte(topo)); r.status != made {
		t.Fatalf("topology: %d %s", r.status, r.body)
	}
	wl := `{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"spread","tenant":"biology"},"spec":{"image":"busybox:latest","spread":[{"level":"building","minDomains":1}]}}`
	if r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/spread", []byte(wl)); r.status != made {
		t.Fatalf("workload: %d %s", r.status, r.body)
	}
	r = e.do("operator", "DELETE", "/v1/topologies/extra", nil)
	if r.status != busy || !strings.Contains(string(r.body), "building") {
		t.Fatalf("delete topology in use: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/v1/tenants/biology/workloads/spread", "/v1/topologies/extra",
		"/v1/tenants/biology/workloads/notebook", "/v1/tenants/biology/workloads/sequencer", "/v1/tenants/biology"} {
		if r := e.do("operator", "DELETE", p, nil); r.status != ok {
			t.Fatalf("DELETE %s: %d %s", p, r.status, r.body)
		}
	}
	if r := e.do("operator", "GET", "/v1/tenants/biology", nil); r.status != no {
		t.Errorf("deleted tenant: %d", r.status)
	}
}

// TestMetrics: /metrics serves the server's own registry with the API,
// placement, replica and admission series.
func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	e.do("operator", "GET", "/v1/plan", nil)
	e.do("admin", "PUT", "/v1/tenants/biology/workloads/x", []byte(`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"x","tenant":"biology"},"spec":{"image":"busybox:latest","replicas":100}}`))
	e.do("admin", "BREW", "/v1/workloads", nil)
	// Only an operator reads them (every tenant's numbers are there).
	for who, want := range map[string]int{"": http.StatusUnauthorized, "admin": http.StatusForbidden, "viewer": http.StatusForbidden} {
		if r := e.do(who, "GET", "/metrics", nil); r.status != want {
			t.Errorf("metrics as %q: %d, want %d", who, r.status, want)
		}
	}
	r := e.do("operator", "GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d", r.status)
	}
	body := string(r.body)
	for _, want := range []string{
		`rung_api_request_duration_seconds_bucket{code="200",method="GET",route="/v1/plan"`,
		`rung_api_request_duration_seconds_count{code="405",method="other",route="/v1/workloads"}`,
		`rung_placements{tier="container"} 7`,
		`rung_replicas{state="pending",tier="container"} 7`,
		`rung_replicas{state="running",tier="vm"} 0`,
		`rung_admission_denials_total{code="quota_exceeded",kind="Workload"} 1`,
		`rung_unplaced_replicas 0`,
		`rung_scheduler_runs_total`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestConcurrentQuota: many concurrent applies that each fit the quota
// but not together: exactly as many succeed as fit, none over.
func TestConcurrentQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	// biology has 4 replicas of 50; 10 workloads of 10 replicas: 4 fit.
	const n = 10
	codes := make(chan int, n)
	for i := range n {
		go func() {
			codes <- e.do("admin", "PUT", "/v1/tenants/biology/workloads/c"+itoa(i), workloadJSON("biology", "c"+itoa(i), 10)).status
		}()
	}
	got := map[int]int{}
	for range n {
		got[<-codes]++
	}
	if got[made] != 4 || got[deny] != n-4 {
		t.Errorf("statuses %v, want 4 created and %d quota denials", got, n-4)
	}
	wls, err := e.client("admin").ListWorkloads(t.Context(), "biology")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, w := range wls {
		total += *w.Spec.Replicas
	}
	if total > 50 {
		t.Errorf("%d replicas stored, quota 50", total)
	}
}

// TestAdmissionRejects: the built-in checks run on every applied workload;
// a failing one rejects with every finding named, and the denial is
// audited.
func TestAdmissionRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t).seed()
	r := e.do("admin", "PUT", "/v1/tenants/biology/workloads/root", []byte(
		`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"root","tenant":"biology"},"spec":{"image":"busybox:latest","privilege":"elevated","capabilities":["SYS_ADMIN"],"resources":{"cpu":"1"}}}`))
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("SYS_ADMIN: %d %s, want 422", r.status, r.body)
	}
	we := r.error(t)
	if we.Code != wire.CodeRejected || !strings.Contains(strings.Join(we.Details, "\n"), "CIS-5.4") {
		t.Errorf("rejection: %+v", we)
	}
	if a := e.lastAudit(); a.Decision != "deny" || !strings.Contains(string(a.Details), "rejected") || !strings.Contains(string(a.Details), "CIS-5.4") {
		t.Errorf("rejection not audited with its findings: %+v", a)
	}
	// The allow-listed capability of an elevated workload passes.
	r = e.do("admin", "PUT", "/v1/tenants/biology/workloads/web", []byte(
		`{"apiVersion":"rung.dev/v1","kind":"Workload","metadata":{"name":"web","tenant":"biology"},"spec":{"image":"busybox:latest","privilege":"elevated","capabilities":["NET_BIND_SERVICE"],"resources":{"cpu":"1"}}}`))
	if r.status != made {
		t.Errorf("NET_BIND_SERVICE: %d %s", r.status, r.body)
	}
	// The admitted workload's decision is in its audit entry: the checks
	// that ran and those left for the node.
	if a := e.lastAudit(); a.Decision == "deny" || !strings.Contains(string(a.Details), `"admission"`) || !strings.Contains(string(a.Details), "CIS-5.4") {
		t.Errorf("admission decision not audited: %s", a.Details)
	}
}

// TestSigningKeysMustBePEM: a Tenant's signedBy must hold PEM public keys
// when it reaches the server (rung apply inlines key files); a path would
// make every image of the tenant refused on the nodes.
func TestSigningKeysMustBePEM(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("operator", "PUT", "/v1/tenants/acme", []byte(
		`{"apiVersion":"rung.dev/v1","kind":"Tenant","metadata":{"name":"acme"},"spec":{"images":{"signedBy":["keys/ci.pub"]}}}`))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "signedBy[0]") {
		t.Fatalf("key path: %d %s, want 422 naming signedBy[0]", r.status, r.body)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := sign.MarshalPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"apiVersion": "rung.dev/v1", "kind": "Tenant", "metadata": map[string]string{"name": "acme"},
		"spec": map[string]any{"images": map[string]any{"signedBy": []string{string(pem)}}}})
	if r := e.do("operator", "PUT", "/v1/tenants/acme", body); r.status != made {
		t.Errorf("PEM key: %d %s", r.status, r.body)
	}
}
