package server_test

import (
	"strings"
	"testing"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

// TestDashboardVolumes: /ui/volumes lists each tenant's volumes (a
// perReplica Volume as its instances) with size, class, binding and the
// replicas that mount them, to the operator; a tenant sees only its own.
func TestDashboardVolumes(t *testing.T) {
	e := newEnv(t).seed()
	applyVolumes(t, e)
	for _, c := range []struct {
		who        string
		want, lack []string
	}{
		{"operator", []string{"Tenant biology", "Tenant geology", "seqdata-0", "seqdata-1", "confidential", "biology-archive-1", "cores", "not bound yet"}, nil},
		{"viewer", []string{"Tenant biology", "seqdata-0", "5Gi", "biology-archive-0"}, []string{"geology", "cores"}},
		{"geo-admin", []string{"Tenant geology", "cores", "2Gi", "no workload mounts it"}, []string{"biology", "seqdata", "archive"}},
	} {
		r := e.do(c.who, "GET", "/ui/volumes", nil)
		page := string(r.body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", c.who, r.status, page)
		}
		for _, w := range c.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s's volumes page lacks %q:\n%s", c.who, w, page)
			}
		}
		for _, l := range c.lack {
			if strings.Contains(page, l) {
				t.Errorf("%s's volumes page shows %q:\n%s", c.who, l, page)
			}
		}
	}
	// A node's page shows the disk its agent reports for volumes.
	c := e.agentClient("h1")
	if err := c.Heartbeat(t.Context(), "h1", wire.Heartbeat{Runtimes: []string{"container"}, VolumeDisk: &wire.VolumeDisk{Capacity: 100 << 30, Free: 40 << 30, Held: 1 << 30}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Heartbeat(t.Context(), "h1", wire.Heartbeat{Runtimes: []string{"container"}, VolumeDisk: &wire.VolumeDisk{Free: -1}}); err == nil || !strings.Contains(err.Error(), "never negative") {
		t.Errorf("a negative disk report: %v", err)
	}
	if r := e.do("operator", "GET", "/ui/nodes/h1", nil); !strings.Contains(string(r.body), "40.0 GiB free of 100.0 GiB · 1.0 GiB held by volume images") {
		t.Errorf("h1's page: %d\n%s", r.status, r.body)
	}
	r := e.do("admin", "GET", "/ui/workloads/biology/archive", nil)
	if page := string(r.body); r.status != 200 || !strings.Contains(page, "rack in [r2]") || !strings.Contains(page, "seqdata</a> (one per replica)") {
		t.Errorf("archive's page: %d\n%s", r.status, page)
	}
}

// TestVolumeDiskFromHeartbeats: the disk each agent reports is what the
// planner places new volumes by: a volume goes to the one node with room
// for it, a second no node has room for waits with the disk filter's
// reason, and the first, bound now, counts against its node.
func TestVolumeDiskFromHeartbeats(t *testing.T) {
	e := newEnv(t).seed()
	ctx := t.Context()
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		free := int64(1 << 30)
		if n == "h3" {
			free = 10 << 30
		}
		if err := e.agentClient(n).Heartbeat(ctx, n, wire.Heartbeat{Runtimes: []string{"container", "sandbox"}, VolumeDisk: &wire.VolumeDisk{Capacity: 50 << 30, Free: free}}); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(name, size string) {
		t.Helper()
		for path, y := range map[string]string{
			"/v1/tenants/biology/volumes/" + name:   "apiVersion: rung.dev/v1\nkind: Volume\nmetadata: {name: " + name + ", tenant: biology}\nspec: {size: " + size + "}\n",
			"/v1/tenants/biology/workloads/" + name: "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: " + name + ", tenant: biology}\nspec:\n  image: busybox:latest\n  resources: {cpu: 100m, memory: 64Mi}\n  volumes: [{name: " + name + ", mountPath: /data}]\n",
		} {
			if r := e.do("admin", "PUT", path, []byte(y)); r.status != 201 {
				t.Fatalf("apply %s: %d %s", path, r.status, r.body)
			}
		}
	}
	apply("one", "6Gi")
	apply("two", "6Gi") // h3 has 10Gi, 6Gi of it bound to "one" now
	res, err := e.client("operator").Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var placed string
	var reasons []string
	for _, p := range res.Placements {
		if p.Workload == "biology/one" {
			placed = p.Node
		}
		if p.Workload == "biology/two" {
			t.Errorf("biology/two placed on %s: no node has 6Gi left", p.Node)
		}
	}
	for _, u := range res.Unplaced {
		if u.Workload == "biology/two" {
			reasons = u.Reasons
		}
	}
	if placed != "h3" {
		t.Errorf("biology/one on %q, want h3 (the only node with room)", placed)
	}
	if got := strings.Join(reasons, "\n"); !strings.Contains(got, "disk: removed 4 of 4 nodes") || !strings.Contains(got, "smallest change: free 2.0Gi more disk for volumes on node h3") {
		t.Errorf("biology/two's reasons:\n%s", got)
	}
}

// agentClient is a client with a node token of node, as its agent has.
func (e *env) agentClient(node string) *client.Client {
	e.t.Helper()
	tok, _, err := e.srv.IssueToken(e.t.Context(), auth.Principal{Role: auth.Operator}, auth.Principal{Role: auth.NodeAgent, Node: node}, "agent")
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := client.New(e.url, tok)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}
