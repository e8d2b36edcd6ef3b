package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// TestReplicaStatus: what a node reports about its replicas (a replica
// that can't start, one that runs) is what the API, the watch and
// /metrics show, per tenant; nothing a node says about a replica not
// placed on it counts.
func TestReplicaStatus(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]
	all, err := op.Replicas(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("replicas = %d, want the 6 placed by threeNodes", len(all))
	}
	// Pages of 4 give the same replicas in the same order.
	p1, err := op.ReplicasPage(ctx, "", "", 4, "")
	if err != nil || len(p1.Items) != 4 || p1.Continue == "" {
		t.Fatalf("first page: %d items, continue %q, err %v", len(p1.Items), p1.Continue, err)
	}
	p2, err := op.ReplicasPage(ctx, "", "", 4, p1.Continue)
	if err != nil || len(p2.Items) != 2 || p2.Continue != "" {
		t.Fatalf("second page: %d items, continue %q, err %v", len(p2.Items), p2.Continue, err)
	}
	for i, r := range append(p1.Items, p2.Items...) {
		if r.ID != all[i].ID {
			t.Errorf("paged replica %d is %s, want %s", i, r.ID, all[i].ID)
		}
	}
	for _, r := range all {
		if r.State != wire.ReplicaPending || r.Ready || !strings.Contains(r.Reason, "not reported") {
			t.Errorf("before any report: %+v, want pending, not ready", r)
		}
	}
	// The node of acme/db's replica 0 reports it failing, and the replica
	// of another node as running (ignored: not placed there).
	var db0, other wire.Replica
	for _, r := range all {
		if r.Workload == "acme/db" && r.Index == 0 {
			db0 = r
		}
	}
	for _, r := range all {
		if r.Node != db0.Node {
			other = r
		}
	}
	code := 127
	hb := wire.Heartbeat{Runtimes: []string{"container"}, Replicas: []wire.ReplicaState{
		{ID: db0.ID, Tenant: "acme", Tier: db0.Tier, Status: "missing", ReplicaStatus: wire.ReplicaStatus{
			State: wire.ReplicaRestarting, Restarts: 4, ExitCode: &code, LastError: "executable /bin/srv not found in image\x1b[31m", Health: "bogus"}},
		{ID: other.ID, Tenant: "acme", Tier: other.Tier, Status: "running", ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaRunning, Health: wire.HealthHealthy}},
	}}
	if err := cs[db0.Node].Heartbeat(ctx, db0.Node, hb); err != nil {
		t.Fatal(err)
	}
	got, err := cs["admin"].Replicas(ctx, "acme", "db")
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, r := range got {
		if r.Workload != "acme/db" {
			t.Errorf("workload list holds %s", r.Workload)
		}
		if r.ID == db0.ID {
			seen = true
			if r.State != wire.ReplicaRestarting || r.Restarts != 4 || r.Ready || r.ExitCode == nil || *r.ExitCode != 127 ||
				r.LastError != "executable /bin/srv not found in image [31m" || r.Health != wire.HealthNone || r.NodeState != wire.NodeUp {
				t.Errorf("failing replica shows %+v", r)
			}
		}
	}
	if !seen {
		t.Fatalf("%s missing from %+v", db0.ID, got)
	}
	for _, r := range mustReplicas(t, op) {
		if r.ID == other.ID && r.State != wire.ReplicaPending {
			t.Errorf("a node's report about a replica placed on %s counted: %+v", other.Node, r)
		}
	}

	// The metrics say the same.
	metrics := string(getMetrics(t, op))
	for _, want := range []string{
		`rung_replica_state{replica="0",state="restarting",tenant="acme",workload="db"} 1`,
		`rung_replica_restarts_total{replica="0",tenant="acme",workload="db"} 4`,
		`rung_replica_ready{replica="0",tenant="acme",workload="db"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A watch sees every replica, then the change when the node reports
	// the replica running.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	events := make(chan wire.Replica, 100)
	go func() {
		_ = cs["admin"].WatchReplicas(wctx, "acme", "", func(ev wire.WatchEvent, r wire.Replica) error {
			if ev.Type == wire.WatchModified {
				events <- r
			}
			return nil
		})
	}()
	time.Sleep(700 * time.Millisecond) // the watch's first listing
	hb.Replicas = []wire.ReplicaState{{ID: db0.ID, Tenant: "acme", Tier: db0.Tier, Status: "running",
		ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaRunning, Restarts: 4, Health: wire.HealthHealthy}}}
	if err := cs[db0.Node].Heartbeat(ctx, db0.Node, hb); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-events:
		if r.ID != db0.ID || r.State != wire.ReplicaRunning || !r.Ready {
			t.Errorf("watched change = %+v", r)
		}
	case <-wctx.Done():
		t.Fatal("the watch saw no change")
	}

	// Another tenant's workload is a 404 to a tenant, like the workload.
	if _, err := cs["admin"].Replicas(ctx, "other", "db"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("another tenant's replicas: %v, want not found", err)
	}
}

func mustReplicas(t *testing.T, c *client.Client) []wire.Replica {
	t.Helper()
	rs, err := c.Replicas(t.Context(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func getMetrics(t *testing.T, c *client.Client) []byte {
	t.Helper()
	b, err := c.Metrics(t.Context()) // operators only
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScaleKeepsPlacements: scaling a workload or changing its image keeps
// its replicas where they are (the node restarts them in place), even
// where a fresh plan would put them elsewhere; new replicas are placed,
// removed ones dropped. A change of what bears on placement places anew.
func TestScaleKeepsPlacements(t *testing.T) {
	e, _, cs := nodeEnvStore(t)
	ctx := t.Context()
	op := cs["operator"]
	where := func() map[int]string {
		t.Helper()
		res, err := op.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[int]string{}
		for _, p := range res.Placements {
			if p.Workload == "acme/web" {
				m[p.Replica] = p.Node
			}
		}
		return m
	}
	if got := where(); len(got) != 3 || got[0] == got[1] {
		t.Fatalf("acme/web placed %v, want 3 replicas spread (soft)", got)
	}
	// As if planned earlier when n3 alone could take them: all on n3, which
	// the soft spread allows but a fresh plan would not choose.
	w, err := e.store.Get(ctx, "/workloads/acme/web")
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`{"workloadRevision":%d,"placements":[`, w.Revision)
	for i := range 3 {
		if i > 0 {
			doc += ","
		}
		doc += fmt.Sprintf(`{"workload":"acme/web","replica":%d,"tier":"container","node":"n3","host":"n3","reason":"test"}`, i)
	}
	doc += `],"unplaced":[]}`
	old, err := e.store.Get(ctx, "/placements/acme/web")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Put(ctx, "/placements/acme/web", []byte(doc), old.Revision); err != nil {
		t.Fatal(err)
	}
	// The planner plans again when a stored object changes.
	tenant, err := v1.Decode("t.yaml", []byte("apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: other}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.ApplySet(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if got := where(); got[0] != "n3" || got[1] != "n3" || got[2] != "n3" {
		t.Fatalf("the stored placements were not kept: %v", got)
	}
	wl, err := op.GetWorkload(ctx, "acme", "web")
	if err != nil {
		t.Fatal(err)
	}
	n := 4
	wl.Spec.Replicas, wl.Spec.Env = &n, map[string]string{"MODE": "x"}
	zero := 0
	wl.Spec.Rollout = v1.Rollout{MaxUnavailable: &n, MaxSurge: &zero} // in place, no surge replica
	if _, err := op.Apply(ctx, wl); err != nil {
		t.Fatal(err)
	}
	after := where()
	if len(after) != 4 || after[0] != "n3" || after[1] != "n3" || after[2] != "n3" {
		t.Errorf("after scaling to 4 with a new environment: %v, want replicas 0-2 still on n3", after)
	}
	n = 2
	if _, err := op.Apply(ctx, wl); err != nil {
		t.Fatal(err)
	}
	if got := where(); len(got) != 2 || got[0] != "n3" || got[1] != "n3" {
		t.Errorf("after scaling to 2: %v, want replicas 0 and 1 on n3", got)
	}
	// Control: a new resource request bears on placement: placed anew,
	// spread again.
	wl.Spec.Resources.PIDs = 64
	if _, err := op.Apply(ctx, wl); err != nil {
		t.Fatal(err)
	}
	if got := where(); len(got) != 2 || got[0] == got[1] {
		t.Errorf("after a resource change: %v, want the replicas placed anew (spread)", got)
	}
}

// TestWatchObjects: ?watch=1 on a list streams the objects, then each
// change; a tenant's watch shows nothing of another tenant.
func TestWatchObjects(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	op := cs["operator"]
	other, err := v1.Decode("o.yaml", []byte(`apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: other}
spec: {organization: other}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.ApplySet(ctx, other); err != nil {
		t.Fatal(err)
	}
	events := make(chan string, 100)
	go func() {
		_ = cs["admin"].Watch(ctx, v1.KindWorkload, "", func(ev wire.WatchEvent) error {
			var w v1.Workload
			_ = json.Unmarshal(ev.Object, &w)
			events <- ev.Type + " " + w.Metadata.Tenant + "/" + w.Metadata.Name
			return nil
		})
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			return "nothing"
		}
	}
	got := []string{next(), next()}
	slices.Sort(got)
	if want := []string{"ADDED acme/db", "ADDED acme/web"}; !slices.Equal(got, want) {
		t.Fatalf("first events %v, want %v", got, want)
	}
	apply := func(tenant, name, image string) {
		t.Helper()
		set, err := v1.Decode("w.yaml", fmt.Appendf(nil, "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: %s, tenant: %s}\nspec: {image: %s, resources: {cpu: 100m, memory: 32Mi}}\n", name, tenant, image))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := op.ApplySet(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	evs := make(chan wire.Event, 100)
	go func() {
		_ = cs["admin"].WatchEvents(ctx, 0, func(e wire.Event) error { evs <- e; return nil })
	}()
	time.Sleep(700 * time.Millisecond)               // the event watch starts at the log's head
	apply("other", "secret-plans", "busybox:latest") // not acme's: never seen
	apply("acme", "cache", "busybox:latest")
	if e := next(); e != "ADDED acme/cache" {
		t.Errorf("after creating acme/cache: %q", e)
	}
	apply("acme", "cache", "busybox:1.36")
	if e := next(); e != "MODIFIED acme/cache" {
		t.Errorf("after changing acme/cache: %q", e)
	}
	if _, err := op.Delete(ctx, client.Ref{Kind: v1.KindWorkload, Tenant: "acme", Name: "cache"}); err != nil {
		t.Fatal(err)
	}
	if e := next(); e != "DELETED acme/cache" {
		t.Errorf("after deleting acme/cache: %q", e)
	}
	// The event watch saw acme's three changes in order, nothing of other's.
	var watched []string
	for len(watched) < 3 {
		select {
		case e := <-evs:
			if e.Tenant != "acme" {
				t.Errorf("acme's event watch shows %+v", e)
			}
			watched = append(watched, e.Result+" "+e.Name)
		case <-ctx.Done():
			t.Fatalf("event watch: %v", watched)
		}
	}
	if want := []string{"created cache", "updated cache", "deleted cache"}; !slices.Equal(watched, want) {
		t.Errorf("watched events %v, want %v", watched, want)
	}
}

// TestRolloutSteps drives rollouts with node reports as agents would send
// them (a replica is ready from the report after it first appears): a new
// image moves every replica to it, never with fewer ready than
// replicas - maxUnavailable, never more than replicas + maxSurge placed,
// never breaking the hard spread (at most 2 per rack), each replica
// keeping its index; the plan names the version each runs.
func TestRolloutSteps(t *testing.T) {
	for _, c := range []struct {
		name        string
		unavailable int
		surge       int
		spread      string
	}{
		{"surge first (defaults)", 0, 1, "{level: rack, maxPerDomain: 3}"},
		{"in place, hard spread full", 1, 0, "{level: rack, maxPerDomain: 2}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, cs := nodeEnv(t)
			ctx := t.Context()
			op := cs["operator"]
			manifest := func(image string) *v1.Set {
				set, err := v1.Decode("roll.yaml", fmt.Appendf(nil, `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: roll, tenant: acme}
spec:
  image: %s
  replicas: 6
  resources: {cpu: 100m, memory: 32Mi}
  spread: [%s]
  rollout: {maxUnavailable: %d, maxSurge: %d}
`, image, c.spread, c.unavailable, c.surge))
				if err != nil {
					t.Fatal(err)
				}
				return set
			}
			for _, name := range []string{"web", "db"} { // room in the quota
				if _, err := op.Delete(ctx, client.Ref{Kind: v1.KindWorkload, Tenant: "acme", Name: name}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := op.ApplySet(ctx, manifest("busybox:1")); err != nil {
				t.Fatal(err)
			}
			// Every node reports what the plan put on it; what it reported
			// in the last round is ready now.
			type key struct{ id, template string }
			seen := map[key]bool{}
			round := func() []scheduler.Placement {
				t.Helper()
				res, err := op.Plan(ctx)
				if err != nil {
					t.Fatal(err)
				}
				byNode := map[string][]wire.ReplicaState{"n1": {}, "n2": {}, "n3": {}}
				var mine []scheduler.Placement
				now := map[key]bool{}
				for _, p := range res.Placements {
					if p.Workload != "acme/roll" {
						continue
					}
					mine = append(mine, p)
					k := key{agentID(p), p.Template}
					now[k] = true
					st := wire.ReplicaStatus{State: wire.ReplicaStarting, Health: wire.HealthStarting, Template: p.Template}
					if seen[k] {
						st.State, st.Health = wire.ReplicaRunning, wire.HealthHealthy
					}
					byNode[p.Node] = append(byNode[p.Node], wire.ReplicaState{ID: k.id, Tenant: "acme", Tier: p.Tier, Status: "running", ReplicaStatus: st})
				}
				for n, states := range byNode {
					if err := cs[n].Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container"}, Replicas: states}); err != nil {
						t.Fatal(err)
					}
				}
				seen = now
				return mine
			}
			var first []scheduler.Placement
			for range 3 { // settle: everything ready on version 1
				first = round()
			}
			if len(first) != 6 {
				t.Fatalf("placed %d, want 6", len(first))
			}
			where := map[int]string{}
			for _, p := range first {
				where[p.Replica] = p.Node
			}
			v1Template := first[0].Template
			if _, err := op.ApplySet(ctx, manifest("busybox:2")); err != nil {
				t.Fatal(err)
			}
			ready := func(ps []scheduler.Placement) int {
				n := 0
				for _, p := range ps {
					if seen[key{agentID(p), p.Template}] {
						n++
					}
				}
				return n
			}
			done := false
			for r := 0; r < 40 && !done; r++ {
				ps := round()
				if n := ready(ps); n < 6-c.unavailable {
					t.Fatalf("round %d: %d ready, under %d", r, n, 6-c.unavailable)
				}
				if len(ps) > 6+c.surge {
					t.Fatalf("round %d: %d placed, over %d", r, len(ps), 6+c.surge)
				}
				perRack := map[string]int{}
				newOnes := 0
				for _, p := range ps {
					perRack[p.Node]++ // one node per rack here
					if p.Replica < 6 && where[p.Replica] != p.Node {
						t.Fatalf("round %d: replica %d moved from %s to %s", r, p.Replica, where[p.Replica], p.Node)
					}
					if p.Template != v1Template && p.Replica < 6 {
						newOnes++
					}
				}
				if c.unavailable > 0 {
					for rack, n := range perRack {
						if n > 2 {
							t.Fatalf("round %d: %d replicas on %s, over the hard spread", r, n, rack)
						}
					}
				}
				done = newOnes == 6 && len(ps) == 6 && ready(ps) == 6
			}
			if !done {
				t.Fatal("the rollout did not finish in 40 rounds")
			}
		})
	}
}

func agentID(p scheduler.Placement) string {
	return strings.ReplaceAll(p.Workload, "/", "-") + "-" + itoa(p.Replica)
}

// TestNodeSecret: a node token reads a Secret only when a replica planned
// on its node mounts it; another node, a secret nobody mounts there, and
// a tenant token get nothing.
func TestNodeSecret(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]
	for _, name := range []string{"db", "other"} {
		sec := &v1.Secret{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
			Metadata: v1.ObjectMeta{Name: name, Tenant: "acme"}, Spec: v1.SecretSpec{Data: map[string]string{"password": "pw-" + name}}}
		if _, err := op.ApplySecret(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	w, err := op.GetWorkload(ctx, "acme", "db")
	if err != nil {
		t.Fatal(err)
	}
	one := 1
	w.Spec.Replicas, w.Spec.Spread = &one, nil
	w.Spec.Secrets = []v1.SecretMount{{Name: "db", MountPath: "/run/secrets/db"}}
	if _, err := op.Apply(ctx, w); err != nil {
		t.Fatal(err)
	}
	res, err := op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := ""
	for _, p := range res.Placements {
		if p.Workload == "acme/db" {
			node = p.Node
		}
	}
	if node == "" {
		t.Fatalf("acme/db is not placed: %+v", res.Unplaced)
	}
	other := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}[node]
	data, err := cs[node].NodeSecret(ctx, node, "acme", "db")
	if err != nil || data["password"] != "pw-db" {
		t.Fatalf("the node of the replica mounting it: %v, %v", data, err)
	}
	if _, err := cs[other].NodeSecret(ctx, other, "acme", "db"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("another node read the secret: %v", err)
	}
	if _, err := cs[node].NodeSecret(ctx, node, "acme", "other"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("the node read a secret no replica of it mounts: %v", err)
	}
	if _, err := cs[node].NodeSecret(ctx, other, "acme", "db"); err == nil {
		t.Error("a node token read as another node")
	}
	if _, err := cs["admin"].NodeSecret(ctx, node, "acme", "db"); err == nil {
		t.Error("a tenant token read through the node endpoint")
	}
}

// TestWatchNodes: an operator watching nodes sees a node come up when its
// agent first heartbeats.
func TestWatchNodes(t *testing.T) {
	_, cs := nodeEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := make(chan string, 100)
	go func() {
		_ = cs["operator"].WatchNodes(ctx, func(ev wire.WatchEvent, n wire.NodeStatus) error {
			events <- ev.Type + " " + n.Name + " " + n.State
			return nil
		})
	}()
	var first []string
	for range 3 {
		select {
		case e := <-events:
			first = append(first, e)
		case <-ctx.Done():
			t.Fatalf("first events: %v", first)
		}
	}
	slices.Sort(first)
	if want := []string{"ADDED n1 unknown", "ADDED n2 unknown", "ADDED n3 unknown"}; !slices.Equal(first, want) {
		t.Fatalf("first events %v, want %v", first, want)
	}
	if err := cs["n2"].Heartbeat(ctx, "n2", wire.Heartbeat{Runtimes: []string{"container"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e != "MODIFIED n2 up" {
			t.Errorf("after n2's heartbeat: %q", e)
		}
	case <-ctx.Done():
		t.Fatal("no change seen after a heartbeat")
	}
}
