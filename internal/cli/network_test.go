package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/network/netnstest"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

// networkAgents: two hosts on a tenant network, and two tenants of one
// organization (the container tier, rule 4) with a replica on each.
var networkAgents = yamlDocs(
	topologyDoc("netw", "network: {pool: 10.204.0.0/16}",
		"{name: nw1, domains: {rack: r1}, capacity: {cpu: 4, memory: 4Gi}}",
		"{name: nw2, domains: {rack: r2}, capacity: {cpu: 4, memory: 4Gi}}"),
	tenantDoc("acme", "campus", ""),
	tenantDoc("beta", "campus", ""),
	workloadDoc("acme", "web", httpdCommand("acme-web"),
		"replicas: 2",
		"resources: {cpu: 100m, memory: 32Mi}",
		"spread: [{level: host, maxPerDomain: 1}]",
		"ports: [{port: 8080, publish: true}]"),
	workloadDoc("beta", "cli", `[sh, -c, "exec sleep 3600"]`,
		"replicas: 2",
		"resources: {cpu: 100m, memory: 32Mi}",
		"spread: [{level: host, maxPerDomain: 1}]"),
)

// TestTenantNetworkAgents is item 5 of issue 14 end to end: a control
// plane and two `rung agent`s, each node a network namespace plugged into
// a bridge (the tenants share an organization: the container tier, rule
// 4); the agents report their underlay addresses, learn each other
// as peers from the control plane, and a tenant's replicas on the two
// nodes reach each other while another tenant's don't.
func TestTenantNetworkAgents(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "ip")
	sw := netnstest.NewSwitch(t)
	hosts := map[string]string{"nw1": "192.0.2.21", "nw2": "192.0.2.22"}
	nsOf := map[string]string{}
	for node, addr := range hosts {
		nsOf[node] = netnstest.NewHost(t, addr, sw).Name
	}

	h := newAgentHarness(t, 5*time.Second, networkAgents)
	dir, info, op := h.dir, h.info, h.op
	ctx := t.Context()
	for node, addr := range hosts {
		h.Start(agentConfig{Node: node, Interval: 300 * time.Millisecond, Underlay: addr, NetNS: "/run/netns/" + nsOf[node]})
	}
	// Cleanups run last first: the workloads go, then the agents, then
	// whatever they left, the control plane and the namespaces.
	var namespaces []string
	for _, ns := range nsOf {
		namespaces = append(namespaces, ns)
	}
	h.deleteWhenDone([]workloadRef{{"acme", "web"}, {"beta", "cli"}}, namespaces...)

	// Every replica running with its address.
	byID := map[string]wire.Replica{}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		reps, err := op.Replicas(ctx, "", "")
		n := 0
		clear(byID)
		for _, r := range reps {
			byID[r.ID] = r
			if r.State == wire.ReplicaRunning && r.Address != "" {
				n++
			}
		}
		if err == nil && n == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas not running with addresses after 3 minutes: %+v (%v)", reps, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The acme web and beta cli replicas on nw2, and acme's web on nw1.
	var webNW1, webNW2, cliNW2 wire.Replica
	for _, r := range byID {
		switch {
		case r.Node == "nw1" && r.Tenant == "acme":
			webNW1 = r
		case r.Node == "nw2" && r.Tenant == "acme":
			webNW2 = r
		case r.Node == "nw2" && r.Tenant == "beta":
			cliNW2 = r
		}
	}
	if webNW1.ID == "" || webNW2.ID == "" || cliNW2.ID == "" {
		t.Fatalf("placement: %+v", byID)
	}
	nw2, err := replica.Open(ctx, filepath.Join(dir, "nw2"), replica.Options{CgroupParent: "/rung/nw2"})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(id, addr string, timeout int) (string, bool) {
		out, ok := httpGet(t, nw2, id, addr, timeout)
		return out, ok && strings.Contains(out, "acme-web")
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		out, ok := fetch(webNW2.ID, webNW1.Address, 10)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on nw2 can't reach %s on nw1 (%s): %s", webNW2.ID, webNW1.ID, webNW1.Address, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, ok := fetch(cliNW2.ID, webNW1.Address, 2); ok {
		t.Errorf("beta's %s reached acme's %s across nodes: %s", cliNW2.ID, webNW1.ID, out)
	}

	// The published port: the API says which node port it got, and that
	// port answers on nw1's address from another machine (nw2's host
	// namespace, not a replica).
	if len(webNW1.Published) != 1 || !strings.HasSuffix(webNW1.Published[0], "/tcp->8080") {
		t.Fatalf("published ports of %s: %q, want one NODEPORT/tcp->8080", webNW1.ID, webNW1.Published)
	}
	nodePort, _, _ := strings.Cut(webNW1.Published[0], "/")
	// (busybox nc: Debian's static busybox wget crashes outside a replica.)
	deadline = time.Now().Add(time.Minute)
	for {
		cmd := exec.Command("ip", "netns", "exec", nsOf["nw2"], "busybox", "nc", "-w", "5", hosts["nw1"], nodePort)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), "acme-web") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("published port %s:%s from nw2's host: %v: %s", hosts["nw1"], nodePort, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// And the CLI shows it to the user.
	tok, err := os.ReadFile(info.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	var wide bytes.Buffer
	code := Execute(ctx, []string{"get", "replicas", "-o", "wide", "--server", info.URL, "--token", strings.TrimSpace(string(tok))}, &wide, &wide)
	if code != ExitOK || !strings.Contains(wide.String(), webNW1.Published[0]) || !strings.Contains(wide.String(), webNW1.Address) {
		t.Errorf("get replicas -o wide (exit %d) doesn't show %s and %s:\n%s", code, webNW1.Published[0], webNW1.Address, wide.String())
	}
}

// httpGet sends GET / to addr:8080 with busybox nc from inside replica id
// of node n, and returns the answer and whether nc exited 0.
func httpGet(t *testing.T, n *replica.Node, id, addr string, timeout int) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	code, err := n.Exec(t.Context(), id, []string{"busybox", "nc", "-w", fmt.Sprint(timeout), addr, "8080"},
		runtime.ExecIO{Stdin: strings.NewReader("GET / HTTP/1.0\r\n\r\n"), Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return out.String(), code == 0
}
