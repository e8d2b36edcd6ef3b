package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/secret"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store/bolt"
)

// threeNodes is three hosts in three racks and a tenant with two
// workloads: web prefers one replica per host (soft), db needs it (hard).
const threeNodes = `
apiVersion: rung.dev/v1
kind: Topology
metadata: {name: three}
spec:
  nodes:
  - {name: n1, domains: {rack: r1}, capacity: {cpu: 4, memory: 4Gi}}
  - {name: n2, domains: {rack: r2}, capacity: {cpu: 4, memory: 4Gi}}
  - {name: n3, domains: {rack: r3}, capacity: {cpu: 4, memory: 4Gi}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {organization: acme, trust: trusted, quota: {cpu: 4, memory: 4Gi, replicas: 10}}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec:
  image: busybox:latest
  replicas: 3
  resources: {cpu: 100m, memory: 32Mi}
  spread: [{level: host, minDomains: 3, maxPerDomain: 2, soft: true}]
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec:
  image: busybox:latest
  replicas: 3
  resources: {cpu: 100m, memory: 32Mi}
  spread: [{level: host, minDomains: 3, maxPerDomain: 2}]
`

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// nodeEnv is a server with a 1s node timeout on a settable clock, the
// threeNodes manifests, and node tokens for n1..n3.
func nodeEnv(t *testing.T) (*clock, map[string]*client.Client) {
	t.Helper()
	_, clk, cs := nodeEnvStore(t)
	return clk, cs
}

// nodeEnvStore is nodeEnv, with the test env (and so its store).
func nodeEnvStore(t *testing.T) (*env, *clock, map[string]*client.Client) {
	t.Helper()
	st, err := bolt.Open(t.TempDir(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Unix(1_000_000, 0)}
	kr, err := secret.Open(filepath.Join(t.TempDir(), "secrets.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: st, Audit: audit.New(st), Now: clk.now, NodeTimeout: time.Second, Secrets: kr})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv, store: st, tokens: map[string]string{}}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL
	ctx := t.Context()
	op, _, err := srv.IssueToken(ctx, auth.Principal{}, auth.Principal{Role: auth.Operator}, "test")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["operator"] = op
	set, err := v1.Decode("three.yaml", []byte(threeNodes))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client("operator").ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	tok, err := e.client("operator").CreateToken(ctx, string(auth.TenantAdmin), "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["admin"] = tok.Token
	cs := map[string]*client.Client{"operator": e.client("operator"), "admin": e.client("admin")}
	for _, n := range []string{"n1", "n2", "n3"} {
		tok, err := cs["operator"].CreateNodeToken(ctx, n, "agent of "+n)
		if err != nil {
			t.Fatal(err)
		}
		if tok.Role != "node" || tok.Node != n {
			t.Fatalf("node token %+v", tok)
		}
		e.tokens[n] = tok.Token
		cs[n] = e.client(n)
	}
	return e, clk, cs
}

// where maps "workload[replica]" to its node in res.
func where(res *scheduler.Result) map[string]string {
	m := map[string]string{}
	for _, p := range res.Placements {
		m[p.Workload+"["+itoa(p.Replica)+"]"] = p.Node
	}
	return m
}

func nodeOf(m map[string]string, node string) []string {
	var out []string
	for k, n := range m {
		if n == node {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func states(t *testing.T, c *client.Client) map[string]string {
	t.Helper()
	ns, err := c.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, n := range ns.Nodes {
		m[n.Name] = n.State
	}
	return m
}

// TestNodeFailover: nodes that never heartbeated count as up; a node that
// stops heartbeating is down after the timeout and only its replicas are
// re-placed (DESIGN §3), with the hard spread it breaks in Problems; when
// it heartbeats again it is up and takes what normal planning gives it.
func TestNodeFailover(t *testing.T) {
	clk, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]

	if diff := cmp.Diff(map[string]string{"n1": wire.NodeUnknown, "n2": wire.NodeUnknown, "n3": wire.NodeUnknown}, states(t, op)); diff != "" {
		t.Errorf("before heartbeats (-want +got):\n%s", diff)
	}
	res, err := op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := where(res)
	for _, n := range []string{"n1", "n2", "n3"} {
		if got := nodeOf(before, n); len(got) != 2 {
			t.Fatalf("%s runs %v, want one web and one db replica", n, got)
		}
		specs, err := cs[n].NodeReplicas(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range specs {
			ids = append(ids, s.ID)
		}
		if len(ids) != 2 {
			t.Errorf("%s desired replicas %v", n, ids)
		}
		if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container"}}); err != nil {
			t.Fatal(err)
		}
	}

	// n3 falls silent; n1 and n2 keep heartbeating.
	clk.add(600 * time.Millisecond)
	for _, n := range []string{"n1", "n2"} {
		if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{}); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(600 * time.Millisecond)
	if diff := cmp.Diff(map[string]string{"n1": wire.NodeUp, "n2": wire.NodeUp, "n3": wire.NodeDown}, states(t, op)); diff != "" {
		t.Errorf("after n3 fell silent (-want +got):\n%s", diff)
	}
	res, err = op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after := where(res)
	for k, n := range before {
		if n != "n3" && after[k] != n {
			t.Errorf("survivor %s moved from %s to %q", k, n, after[k])
		}
	}
	if got := nodeOf(after, "n3"); len(got) != 0 {
		t.Errorf("down n3 still has %v", got)
	}
	lostWeb := nodeOf(before, "n3")[1] // "acme/db[..]" sorts before "acme/web[..]"
	if after[lostWeb] == "" || after[lostWeb] == "n3" {
		t.Errorf("lost %s not re-placed: %q", lostWeb, after[lostWeb])
	}
	lostDB := nodeOf(before, "n3")[0]
	if after[lostDB] != "" {
		t.Errorf("%s placed on %s despite its hard spread", lostDB, after[lostDB])
	}
	wantProblem := "acme/db: spread host can no longer be met: needs 3 domains, replicas are in 2"
	if !slices.Contains(res.Problems, wantProblem) {
		t.Errorf("problems %q, want %q", res.Problems, wantProblem)
	}
	if specs, err := cs["n3"].NodeReplicas(ctx, "n3"); err != nil || len(specs) != 0 {
		t.Errorf("down n3's desired replicas: %v %v", specs, err)
	}

	// n3 comes back: up again; survivors and re-placed replicas stay, and
	// the unplaced db replica goes back to it by normal planning.
	if err := cs["n3"].Heartbeat(ctx, "n3", wire.Heartbeat{}); err != nil {
		t.Fatal(err)
	}
	if st := states(t, op)["n3"]; st != wire.NodeUp {
		t.Errorf("n3 after heartbeat: %s", st)
	}
	res, err = op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	back := where(res)
	for k, n := range after {
		if back[k] != n {
			t.Errorf("%s moved from %s to %s when n3 came back", k, n, back[k])
		}
	}
	if back[lostDB] != "n3" || len(res.Problems) != 0 {
		t.Errorf("db replica %s on %q, problems %q; want it back on n3, none", lostDB, back[lostDB], res.Problems)
	}
}

// TestNodeAccess: a node token heartbeats and reads as its own node only;
// node endpoints are for operators and node tokens.
func TestNodeAccess(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	forbidden := func(err error) bool {
		var ce *client.Error
		return errors.As(err, &ce) && ce.Status == http.StatusForbidden
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"n1 heartbeats as n2", func() error { return cs["n1"].Heartbeat(ctx, "n2", wire.Heartbeat{}) }},
		{"n1 reads n2's replicas", func() error { _, err := cs["n1"].NodeReplicas(ctx, "n2"); return err }},
		{"n1 lists nodes", func() error { _, err := cs["n1"].Nodes(ctx); return err }},
		{"n1 reads the plan", func() error { _, err := cs["n1"].Plan(ctx); return err }},
		{"n1 lists workloads", func() error { _, err := cs["n1"].ListWorkloads(ctx, ""); return err }},
		{"n1 reads a workload", func() error { _, err := cs["n1"].GetWorkload(ctx, "acme", "web"); return err }},
		{"n1 makes a token", func() error { _, err := cs["n1"].CreateNodeToken(ctx, "n1", ""); return err }},
		{"n1 reads events", func() error { _, err := cs["n1"].TailEvents(ctx, 10); return err }},
		{"tenant admin heartbeats", func() error { return cs["admin"].Heartbeat(ctx, "n1", wire.Heartbeat{}) }},
		{"tenant admin reads n1's replicas", func() error { _, err := cs["admin"].NodeReplicas(ctx, "n1"); return err }},
		{"tenant admin lists nodes", func() error { _, err := cs["admin"].Nodes(ctx); return err }},
	} {
		if err := tc.call(); !forbidden(err) {
			t.Errorf("%s: %v, want 403", tc.name, err)
		}
	}
	if err := cs["n1"].Heartbeat(ctx, "n1", wire.Heartbeat{}); err != nil {
		t.Errorf("own heartbeat: %v", err)
	}
	if _, err := cs["n1"].NodeReplicas(ctx, "n1"); err != nil {
		t.Errorf("own replicas: %v", err)
	}
	if _, err := cs["operator"].CreateToken(ctx, "node", "", ""); err == nil {
		t.Error("node token without a node accepted")
	}
	if _, err := cs["operator"].CreateNodeToken(ctx, "Bad_Name", ""); err == nil {
		t.Error("node token for an invalid node name accepted")
	}
}

// TestPlanDetectedRuntimes: the planner offers on each node only what its
// agent reports it can run. With no agent able to run gVisor, a workload
// that needs sandbox is unplaced with that reason; once n2 reports runsc
// it runs there; rung up's own agent, standing for every other node,
// restricts them the same way.
func TestPlanDetectedRuntimes(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]
	set, err := v1.Decode("lab.yaml", []byte(sandboxProbe))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	probe := func() (string, []string) { return placedAt(t, ctx, op, "lab/probe", "sandbox") }
	if n, _ := probe(); n == "" {
		t.Fatal("without reports lab/probe should be placed (nodes default to container and sandbox)")
	}

	for _, n := range []string{"n1", "n2", "n3"} {
		if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container", "host"}}); err != nil {
			t.Fatal(err)
		}
	}
	n, reasons := probe()
	if n != "" || !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, "node runs [container]") }) {
		t.Errorf("no runsc anywhere: lab/probe on %q, reasons %q; want unplaced, naming [container]", n, reasons)
	}

	if err := cs["n2"].Heartbeat(ctx, "n2", wire.Heartbeat{Runtimes: []string{"container", "sandbox", "host"}}); err != nil {
		t.Fatal(err)
	}
	if n, reasons := probe(); n != "n2" {
		t.Errorf("runsc on n2: lab/probe on %q (%q), want n2", n, reasons)
	}
}

// TestHeartbeatRuntimesBounded: a heartbeat listing more runtimes than
// there could be tiers is refused, and names this server doesn't know
// are ignored rather than refused (a newer agent may know more tiers).
func TestHeartbeatRuntimesBounded(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	many := make([]string, 17)
	for i := range many {
		many[i] = "container"
	}
	err := cs["n1"].Heartbeat(ctx, "n1", wire.Heartbeat{Runtimes: many})
	if err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("17 runtimes: %v, want refused", err)
	}
	if err := cs["n1"].Heartbeat(ctx, "n1", wire.Heartbeat{Runtimes: []string{"container", "quantum"}}); err != nil {
		t.Errorf("unknown runtime name: %v, want accepted", err)
	}
}

// TestNodeDecisionsAudited: the admission decisions a node sends with its
// heartbeat land in the audit log under the node's name, with the image
// digest and every finding, if they are about what is planned on the
// node (others, of an unknown kind too, are dropped); a heartbeat with too
// many is refused whole.
func TestNodeDecisionsAudited(t *testing.T) {
	e := newEnv(t).seed()
	ctx := t.Context()
	tok, _, err := e.srv.IssueToken(ctx, auth.Principal{Role: auth.Operator}, auth.Principal{Role: auth.NodeAgent, Node: "h1"}, "agent")
	if err != nil {
		t.Fatal(err)
	}
	node, _ := client.New(e.url, tok)
	d := policy.Decision{Kind: policy.KindImage, Tenant: "biology", Subject: "busybox:latest", Digest: "sha256:" + strings.Repeat("ab", 32),
		Findings: []policy.Finding{{ID: "CIS-4.8", Title: "setuid", Severity: policy.SeverityHigh, Detail: "/usr/bin/su is setuid root", Fix: "drop it"}},
		Checked:  []string{"CIS-4.8"}}
	bad := d
	bad.Kind = "toaster"
	many := make([]policy.Decision, wire.MaxDecisions+1)
	if err := node.Heartbeat(ctx, "h1", wire.Heartbeat{Runtimes: []string{"container"}, Decisions: many}); err == nil {
		t.Errorf("a heartbeat with %d decisions was accepted", len(many))
	}
	// Decisions about what isn't planned on h1 (another image, a tenant
	// with nothing there, a forged digest) are dropped; the heartbeat
	// still counts.
	foreign := d
	foreign.Subject = "registry.example/other:1"
	stranger := d
	stranger.Tenant = "nobody"
	forged := d
	forged.Digest = "sha256:nothex\nFAKE"
	if err := node.Heartbeat(ctx, "h1", wire.Heartbeat{Runtimes: []string{"container"}, Decisions: []policy.Decision{foreign, d, stranger, forged, bad}}); err != nil {
		t.Fatal(err)
	}
	entries, err := e.audit.Entries(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range entries {
		if a.Action != "admit" {
			continue
		}
		var det struct {
			Result    string           `json:"result"`
			Admission *policy.Decision `json:"admission"`
		}
		if err := json.Unmarshal(a.Details, &det); err != nil || det.Admission == nil {
			t.Fatalf("entry %d details %s: %v", a.Seq, a.Details, err)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s %s %s", a.Actor, a.Object, a.Decision, det.Result, det.Admission.Digest, det.Admission.Findings[0].ID))
	}
	want := []string{"node/h1 Image/biology/busybox:latest deny rejected sha256:" + strings.Repeat("ab", 32) + " CIS-4.8"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("admit entries (-want +got):\n%s", diff)
	}
}

// placedAt is where the plan put replica 0 of workload: its node, or ""
// and the planner's reasons when unplaced. A placement on another tier
// than tier is an error (never weaker).
func placedAt(t *testing.T, ctx context.Context, op *client.Client, workload, tier string) (node string, reasons []string) {
	t.Helper()
	res, err := op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Placements {
		if p.Workload == workload {
			if p.Tier != tier {
				t.Errorf("%s at %s, want %s", workload, p.Tier, tier)
			}
			return p.Node, nil
		}
	}
	for _, u := range res.Unplaced {
		if u.Workload == workload {
			return "", u.Reasons
		}
	}
	t.Fatalf("%s neither placed nor unplaced", workload)
	return "", nil
}

// sandboxProbe is a tenant whose workload lab/probe needs the sandbox
// tier: the runtime and network-tier tests watch where the plan puts it.
const sandboxProbe = `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: lab}
spec: {organization: acme, trust: trusted, isolation: {minimum: sandbox}}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: probe, tenant: lab}
spec: {image: busybox:latest, resources: {cpu: 100m, memory: 32Mi}}
`
