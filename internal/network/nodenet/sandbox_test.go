package nodenet_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/network/netnstest"
	"rung.dev/rung/internal/network/nodenet"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
)

// TestSandboxNetworkPackets: with a runsc that passes the probe (the
// operator's --runsc; make runsc), the node opened as every process opens
// it (plugins.OpenNode) runs sandboxes with gVisor's own network stack in
// the replica's namespace. Real packets: a sandbox and a container of one
// tenant reach each other both ways; another tenant's container is
// refused by the sandbox and the sandbox by it; the node's port and
// 169.254.169.254 are unreachable from the sandbox while they answer the
// node; the node reports the sandbox tier; nothing is left after the
// replicas stop (links, table, records, runsc's null-netns mounts).
func TestSandboxNetworkPackets(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	drivertest.RequireBinary(t, "nft")
	runsc := drivertest.NetworkRunsc(t)
	h := newHost(t, "192.0.2.20")
	dir := drivertest.SearchableTempDir(t)
	ctx := t.Context()
	node, err := plugins.OpenNode(ctx, dir, replica.Options{CgroupParent: "/rungtest/" + scope()}, plugins.Config{NetNS: h.Path, Runsc: runsc})
	if err != nil {
		t.Fatal(err)
	}
	nt, ok := node.Attacher("network").(*nodenet.Net)
	if !ok {
		t.Fatalf("the node's network attacher is %T, want *nodenet.Net", node.Attacher("network"))
	}
	t.Cleanup(func() { nt.Close() })
	if !nt.Tiers().Has(tenancy.Sandbox) {
		t.Fatalf("the node reports network tiers %s: the probe of %s failed (see the log), want sandbox among them", nt.Tiers(), runsc)
	}
	f := &fixture{cfg: nodenet.Config{Dir: filepath.Join(dir, "network"), Scope: nodenet.ScopeFor(dir), NetNS: h.Path}, host: h, net: nt, node: node, dir: dir}
	f.busybox(t)
	h.serveForbidden(t)

	spec := func(workload string) *network.Spec {
		return &network.Spec{Pool: "10.203.0.0/16", Subnet: "10.203.1.0/24", Workload: workload}
	}
	body := func(s string) string { return strings.ReplaceAll(web, "$TENANT_BODY", s) }
	f.startTier(t, "acme-sb-0", "acme", tenancy.Sandbox, spec("sb"), body("acme-sandbox"))
	f.start(t, "acme-ctr-0", "acme", spec("ctr"), body("acme-container"))
	f.start(t, "geo-ctr-0", "geo", spec("ctr"), body("geo-container"))
	sb, _ := nt.Address("acme-sb-0")
	ctr, _ := nt.Address("acme-ctr-0")
	geo, _ := nt.Address("geo-ctr-0")
	url := func(a fmt.Stringer, port int) string { return fmt.Sprintf("http://%s:%d/", a, port) }

	// One tenant, both ways, every port.
	f.reach(t, "acme-ctr-0", url(sb, 8080), "acme-sandbox")
	f.reach(t, "acme-ctr-0", url(sb, 9090), "acme-sandbox")
	f.reach(t, "acme-sb-0", url(ctr, 8080), "acme-container")
	// Another tenant, neither way (its server answers its own tenant's
	// clients: the container itself).
	f.reach(t, "geo-ctr-0", url(geo, 8080), "geo-container")
	f.refused(t, "geo-ctr-0", url(sb, 8080))
	f.refused(t, "acme-sb-0", url(geo, 8080))
	// The node and the metadata address answer the node, not the sandbox.
	f.refusesNode(t, "acme-sb-0", "10.203.1.1")
	// Discovery works from gVisor's stack too.
	if out := f.exec(t, "acme-sb-0", "busybox", "nslookup", "ctr"); !strings.Contains(out, ctr.String()) {
		t.Errorf("acme's ctr does not resolve in the sandbox:\n%s", out)
	}

	// What rung verify shows: gVisor holds the address; the namespace's
	// eth0, as the host sees it, has none (and no route). An address put
	// back on it (the host kernel would answer for the replica) fails.
	st, err := node.State(ctx, "acme-sb-0")
	if err != nil {
		t.Fatal(err)
	}
	in, ok, err := nodenet.InspectIn(ctx, f.cfg, "acme-sb-0", st.Pid, true)
	if err != nil || !ok || !in.Netstack || in.Address != sb.String()+"/32" || len(in.Problems) > 0 || len(in.Rules) == 0 {
		t.Errorf("inspection of the sandbox: %+v, %v, %v", in, ok, err)
	}
	if in, _, _ := nodenet.InspectIn(ctx, f.cfg, "acme-sb-0", st.Pid, false); len(in.Problems) == 0 {
		t.Errorf("inspected as a container, the sandbox's eth0 (no address) passed: %+v", in)
	}
	netnstest.Run(t, "nsenter", "-t", fmt.Sprint(st.Pid), "-n", "ip", "addr", "add", "10.203.1.250/32", "dev", "eth0")
	if in, _, _ := nodenet.InspectIn(ctx, f.cfg, "acme-sb-0", st.Pid, true); !slices.ContainsFunc(in.Problems, func(p string) bool { return strings.Contains(p, "eth0 keeps 10.203.1.250/32") }) {
		t.Errorf("an address on the sandbox namespace's eth0 went unnoticed: %+v", in)
	}

	for _, id := range []string{"acme-sb-0", "acme-ctr-0", "geo-ctr-0"} {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := node.Remove(rctx, id)
		cancel()
		if err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	if out := netnstest.Run(t, "ip", "-n", h.Name, "-o", "link"); strings.Contains(out, " rv") {
		t.Errorf("links left after the replicas stopped:\n%s", out)
	}
	if out := netnstest.Run(t, "ip", "netns", "exec", h.Name, "nft", "list", "tables"); strings.Contains(out, "rung-"+f.cfg.Scope) {
		t.Errorf("table left after the replicas stopped:\n%s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "network")); len(ents) != 0 {
		t.Errorf("network records left: %v", ents)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), dir) {
		t.Errorf("mounts left under %s:\n%s", dir, mi)
	}
}

// startTier starts replica id at tier.
func (f *fixture) startTier(t *testing.T, id, tenant string, tier tenancy.Tier, net *network.Spec, script string) {
	t.Helper()
	s := replica.Spec{ID: id, Tenant: tenant, Tier: tier, Image: "busybox:latest", Args: []string{"sh", "-c", script}, Network: net}
	if err := f.node.Start(t.Context(), s); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = f.node.Remove(ctx, id)
	})
}

// TestSandboxNetworkRefused: with Debian 12's runsc as --runsc, the probe
// fails, the node keeps --network=none, reports no sandbox network tier
// and refuses a sandbox replica with a network (fail closed), while the
// same node starts a networked container.
func TestSandboxNetworkRefused(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	old := drivertest.RequireBinary(t, "runsc")
	if v, _ := exec.Command(old, "--version").Output(); !strings.Contains(string(v), "20221219") {
		t.Skipf("%s is not Debian 12's runsc (%s): no known-failing runsc", old, v)
	}
	h := newHost(t, "192.0.2.21")
	dir := drivertest.SearchableTempDir(t)
	node, err := plugins.OpenNode(t.Context(), dir, replica.Options{CgroupParent: "/rungtest/" + scope()}, plugins.Config{NetNS: h.Path, Runsc: old})
	if err != nil {
		t.Fatal(err)
	}
	nt := node.Attacher("network").(*nodenet.Net)
	t.Cleanup(func() { nt.Close() })
	if nt.Tiers().Has(tenancy.Sandbox) {
		t.Fatalf("tiers %s with Debian's runsc: want no sandbox", nt.Tiers())
	}
	f := &fixture{host: h, net: nt, node: node, dir: dir}
	f.busybox(t)
	spec := &network.Spec{Pool: "10.204.0.0/16", Subnet: "10.204.1.0/24", Workload: "w"}
	s := replica.Spec{ID: "acme-sb-0", Tenant: "acme", Tier: tenancy.Sandbox, Image: "busybox:latest", Args: []string{"sleep", "3600"}, Network: spec}
	err = node.Start(t.Context(), s)
	if err == nil {
		_ = node.Remove(context.WithoutCancel(t.Context()), s.ID)
	}
	if !errors.Is(err, nodenet.ErrUnsupported) {
		t.Fatalf("start of a networked sandbox with Debian's runsc: %v, want ErrUnsupported", err)
	}
	f.start(t, "acme-ctr-0", "acme", spec, web)
	if _, ok := nt.Address("acme-ctr-0"); !ok {
		t.Fatal("the networked container has no address")
	}
}
