package cli

import (
	"strings"
	"testing"
)

// networkPlanManifest: two trusted tenants of different organizations on
// one node (rule 5: the second needs a sandbox), on a Topology with or
// without a tenant network.
func networkPlanManifest(network string) string {
	return yamlDocs(
		topologyDoc("lab", network, `{name: n1, runtimes: [container, sandbox], capacity: {cpu: "4", memory: 8Gi}}`),
		tenantDoc("acme", "acme", ""),
		tenantDoc("geo", "geo", ""),
		`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec: {image: busybox:latest, resources: {cpu: 100m, memory: 64Mi}, isolation: {minimum: container}}
`,
		`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: geo}
spec: {image: busybox:latest, resources: {cpu: 100m, memory: 64Mi}, isolation: {minimum: container}}
`)
}

// TestExplainNetworkTiers: a workload the rules put in a sandbox, on a
// node whose Topology has a tenant network, stays unplaced (never moved
// to the container tier), and both `rung explain` and `rung apply` on a
// control plane name the network and the fix; without the network it
// gets its sandbox.
func TestExplainNetworkTiers(t *testing.T) {
	without := write(t, t.TempDir(), "without.yaml", networkPlanManifest(""))
	with := write(t, t.TempDir(), "with.yaml", networkPlanManifest("network: {pool: 10.88.0.0/16}"))
	const why = "sandbox tier can't join a tenant network on node n1"

	// Without a network, one of them gets a sandbox.
	code, out, errs := run(t, "explain", "-f", without, "geo/db")
	code2, out2, _ := run(t, "explain", "-f", without, "acme/web")
	if code != 0 || code2 != 0 || !strings.Contains(out+out2, "sandbox on node n1") {
		t.Fatalf("explain without a network: %d %d\n%s\n%s%s", code, code2, out, out2, errs)
	}
	code, out, errs = run(t, "explain", "-f", with, "geo/db")
	if code != ExitUnplaced || !strings.Contains(out, "NOT PLACED") || !strings.Contains(out, why) || !strings.Contains(out, "fix:") {
		t.Errorf("explain with a network: exit %d, want %d and %q:\n%s%s", code, ExitUnplaced, why, out, errs)
	}
	if code, out, _ := run(t, "explain", "-f", with, "acme/web"); code != 0 || !strings.Contains(out, "container on node n1") {
		t.Errorf("acme/web with a network: %d\n%s", code, out)
	}

	// The control plane plans the same: apply exits 3 with the reason.
	startUp(t)
	code, out, errs = rungCmd(t, "apply", "-f", with)
	if code != ExitUnplaced || !strings.Contains(out+errs, why) {
		t.Errorf("apply with a network: exit %d, want %d and %q:\n%s%s", code, ExitUnplaced, why, out, errs)
	}
}
