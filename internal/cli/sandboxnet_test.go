package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/network/netnstest"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

// sandboxNetManifest: two tenants on one node of a Topology with a tenant
// network; geo's workload asks for the sandbox tier.
var sandboxNetManifest = yamlDocs(
	topologyDoc("sblab", "network: {pool: 10.206.0.0/16}", `{name: sn1, capacity: {cpu: "4", memory: 8Gi}}`),
	tenantDoc("acme", "acme", ""),
	tenantDoc("geo", "acme", ""),
	workloadDoc("acme", "web", httpdCommand("acme-web"),
		"resources: {cpu: 100m, memory: 64Mi}",
		"isolation: {minimum: container}"),
	workloadDoc("geo", "db", httpdCommand("geo-db"),
		"replicas: 2",
		"resources: {cpu: 100m, memory: 64Mi}",
		"isolation: {minimum: sandbox}"),
)

// TestSandboxNetworkAgent: `rung agent --runsc` with a runsc that runs
// sandbox networks reports the sandbox tier in its heartbeat, the planner
// places geo's replicas (isolation minimum sandbox) on the networked node
// (until then they wait unplaced), they run under gVisor with addresses, reach each other, and can't
// reach acme's container.
func TestSandboxNetworkAgent(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "ip")
	runsc := drivertest.NetworkRunsc(t)
	ns := netnstest.NewHost(t, "192.0.2.31").Name
	h := newAgentHarness(t, 5*time.Minute, sandboxNetManifest)
	dir, op := h.dir, h.op
	ctx := t.Context()
	h.Start(agentConfig{Node: "sn1", Interval: 300 * time.Millisecond, Underlay: "192.0.2.31", NetNS: "/run/netns/" + ns, Runsc: runsc})
	// Cleanups run last first: the workloads go, then the agent, then
	// whatever it left is removed.
	h.deleteWhenDone([]workloadRef{{"acme", "web"}, {"geo", "db"}}, ns)

	// geo's two sandboxes and acme's container, running with addresses
	// (the probe, the heartbeat's tiers and a re-plan take a while).
	var web wire.Replica
	var dbs []wire.Replica
	deadline := time.Now().Add(4 * time.Minute)
	for {
		reps, err := op.Replicas(ctx, "", "")
		web, dbs = wire.Replica{}, nil
		for _, r := range reps {
			if r.State != wire.ReplicaRunning || r.Address == "" {
				continue
			}
			switch r.Tenant {
			case "acme":
				web = r
			case "geo":
				dbs = append(dbs, r)
			}
		}
		if err == nil && web.ID != "" && len(dbs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not all running with addresses after 4 minutes: %+v (%v)", reps, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, r := range dbs {
		if r.Tier != "sandbox" {
			t.Fatalf("geo's replica %s runs at tier %q, want sandbox", r.ID, r.Tier)
		}
	}
	if web.Tier != "container" {
		t.Errorf("acme's web runs at tier %q, want container", web.Tier)
	}
	n, err := replica.Open(ctx, filepath.Join(dir, "sn1"), replica.Options{CgroupParent: "/rung/sn1", RunscBinary: runsc, RunscNetwork: "sandbox"})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(id, addr string, timeout int) (string, bool) {
		out, ok := httpGet(t, n, id, addr, timeout)
		return out, ok && strings.Contains(out, "200 OK")
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		out, ok := fetch(dbs[0].ID, dbs[1].Address, 10)
		if ok && strings.Contains(out, "geo-db") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s can't reach sandbox %s (%s): %s", dbs[0].ID, dbs[1].ID, dbs[1].Address, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, ok := fetch(dbs[0].ID, web.Address, 3); ok {
		t.Errorf("geo's sandbox %s reached acme's %s: %s", dbs[0].ID, web.ID, out)
	}
}
