package server_test

import (
	"slices"
	"strings"
	"testing"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// TestPlanNetworkTiers: on a Topology with a tenant network, a workload
// that needs a sandbox stays unplaced while the nodes attach networks to
// container and host only (their default, and what they report), with the
// reason naming the network; once n2 reports it attaches sandboxes too,
// the workload runs there, at its sandbox tier.
func TestPlanNetworkTiers(t *testing.T) {
	e, _, cs := nodeEnvStore(t)
	ctx := t.Context()
	op := cs["operator"]
	set := networkProbeSet(t)
	if _, err := e.client("operator").ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	probe := func() (string, []string) { return placedAt(t, ctx, op, "lab/probe", "sandbox") }
	const why = "sandbox tier can't join a tenant network on node"
	n, reasons := probe()
	if n != "" || !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, why) }) {
		t.Errorf("no node attaches sandboxes: lab/probe on %q, reasons %q; want unplaced, naming %q", n, reasons, why)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		hb := wire.Heartbeat{Runtimes: []string{"container", "sandbox"}, Network: &wire.NodeNetwork{Underlay: "192.0.2.1", Tiers: []string{"container", "host"}}}
		if n == "n2" {
			hb.Network.Tiers = append(hb.Network.Tiers, "sandbox")
		}
		if err := cs[n].Heartbeat(ctx, n, hb); err != nil {
			t.Fatal(err)
		}
	}
	if n, reasons := probe(); n != "n2" {
		t.Errorf("n2 attaches sandboxes: lab/probe on %q (%q), want n2", n, reasons)
	}
}

// TestPlanLocalNetworkTiers: `rung up`'s own agent, standing in for every
// node, has no heartbeat to say which tiers it attaches networks to; it
// publishes them. Until it does, a sandbox on a tenant network stays
// unplaced (the default: container and host); once it says sandbox, the
// workload is placed at its sandbox tier. A node's own heartbeat still
// decides for that node.
func TestPlanLocalNetworkTiers(t *testing.T) {
	e, _, cs := nodeEnvStore(t)
	ctx := t.Context()
	op := cs["operator"]
	set := networkProbeSet(t)
	e.srv.SetLocalRuntimes("", tenancy.Set(0).With(tenancy.Container).With(tenancy.Sandbox).With(tenancy.Host))
	if _, err := e.client("operator").ApplySet(ctx, set); err != nil {
		t.Fatal(err)
	}
	probe := func() (string, []string) { return placedAt(t, ctx, op, "lab/probe", "sandbox") }
	if n, reasons := probe(); n != "" {
		t.Fatalf("nothing published: lab/probe on %q (%q), want unplaced", n, reasons)
	}
	e.srv.PublishLocalNetwork(tenancy.Set(0).With(tenancy.Container).With(tenancy.Host))
	if n, reasons := probe(); n != "" {
		t.Fatalf("local agent attaches container and host: lab/probe on %q (%q), want unplaced", n, reasons)
	}
	e.srv.PublishLocalNetwork(tenancy.Set(0).With(tenancy.Container).With(tenancy.Sandbox).With(tenancy.Host))
	if n, reasons := probe(); n == "" {
		t.Fatalf("local agent attaches sandboxes: lab/probe unplaced (%q), want placed", reasons)
	}
}

// networkProbeSet is the three nodes on a tenant network, with lab's
// workload that needs a sandbox.
func networkProbeSet(t *testing.T) *v1.Set {
	t.Helper()
	set, err := v1.Decode("three.yaml", []byte(threeNodes))
	if err != nil {
		t.Fatal(err)
	}
	set.Topologies[0].Spec.Network = &v1.TopologyNetwork{Pool: "10.88.0.0/16"}
	lab, err := v1.Decode("lab.yaml", []byte(sandboxProbe))
	if err != nil {
		t.Fatal(err)
	}
	set.Tenants = append(set.Tenants, lab.Tenants...)
	set.Workloads = append(set.Workloads, lab.Workloads...)
	return set
}
