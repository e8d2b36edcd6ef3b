package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

const networkAgents = `
apiVersion: rung.dev/v1
kind: Topology
metadata: {name: netw}
spec:
  network: {pool: 10.204.0.0/16}
  nodes:
  - {name: nw1, domains: {rack: r1}, capacity: {cpu: 4, memory: 4Gi}}
  - {name: nw2, domains: {rack: r2}, capacity: {cpu: 4, memory: 4Gi}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {organization: campus, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: beta}
spec: {organization: campus, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec:
  image: busybox:latest
  command: [sh, -c, "echo acme-web > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp"]
  replicas: 2
  resources: {cpu: 100m, memory: 32Mi}
  spread: [{level: host, maxPerDomain: 1}]
  ports: [{port: 8080, publish: true}]
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: cli, tenant: beta}
spec:
  image: busybox:latest
  command: [sh, -c, "exec sleep 3600"]
  replicas: 2
  resources: {cpu: 100m, memory: 32Mi}
  spread: [{level: host, maxPerDomain: 1}]
`

func netTestNS(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "rungtest-" + hex.EncodeToString(b)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// TestTenantNetworkAgents is item 5 of issue 14 end to end: a control
// plane and two `rung agent`s, each node a network namespace plugged into
// a bridge (the tenants share an organization: the container tier, rule
// 4); the agents report their underlay addresses, learn each other
// as peers from the control plane, and a tenant's replicas on the two
// nodes reach each other while another tenant's don't.
func TestTenantNetworkAgents(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	drivertest.RequireBinary(t, "ip")
	dir := drivertest.SearchableTempDir(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sw := netTestNS(t)
	run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	run("ip", "-n", sw, "link", "set", "br0", "up")
	hosts := map[string]string{"nw1": "192.0.2.21", "nw2": "192.0.2.22"}
	nsOf := map[string]string{}
	for node, addr := range hosts {
		ns := netTestNS(t)
		nsOf[node] = ns
		port := "p" + ns[len("rungtest-"):]
		run("ip", "-n", ns, "link", "add", "nic0", "type", "veth", "peer", "name", port, "netns", sw)
		run("ip", "-n", sw, "link", "set", port, "master", "br0")
		run("ip", "-n", sw, "link", "set", port, "up")
		run("ip", "-n", ns, "addr", "add", addr+"/24", "dev", "nic0")
		run("ip", "-n", ns, "link", "set", "nic0", "up")
	}

	info, op := upControlPlane(t, dir, log, 5*time.Second, networkAgents)
	ctx := t.Context()
	var dones []chan error
	var stops []context.CancelFunc
	for node, addr := range hosts {
		tr, err := op.CreateNodeToken(ctx, node, "test agent")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := client.New(info.URL, tr.Token)
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cfg := agentConfig{Node: node, DataDir: filepath.Join(dir, node), Interval: 300 * time.Millisecond, Underlay: addr, NetNS: "/run/netns/" + nsOf[node]}
		go func() { done <- runAgent(actx, nc, cfg, log) }()
		dones, stops = append(dones, done), append(stops, stop)
	}
	// Last cleanup registered runs first: the workloads go, then the
	// agents, then the control plane (upControlPlane's); the namespaces
	// go after.
	// Whatever the agents left (a failure before they removed it) is
	// removed once they stopped, so no container outlives the test.
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for node := range hosts {
			n, err := plugins.OpenNode(rctx, filepath.Join(dir, node), replica.Options{CgroupParent: "/rung/" + node}, plugins.Config{Node: node, NetNS: "/run/netns/" + nsOf[node]})
			if err != nil {
				t.Errorf("open %s to clean up: %v", node, err)
				continue
			}
			recs, _ := n.Records()
			for _, r := range recs {
				if err := n.Remove(rctx, r.Spec.ID); err != nil {
					t.Errorf("remove %s: %v", r.Spec.ID, err)
				}
			}
			// The node's emptied cgroup parents (/rung/NODE/TENANT).
			dirs, _ := filepath.Glob("/sys/fs/cgroup/*/rung/" + node)
			for _, d := range dirs {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if e.IsDir() {
						_ = os.Remove(filepath.Join(d, e.Name()))
					}
				}
				_ = os.Remove(d)
			}
		}
	})
	t.Cleanup(func() {
		for _, s := range stops {
			s()
		}
		for _, d := range dones {
			<-d
		}
	})
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, w := range []struct{ tenant, name string }{{"acme", "web"}, {"beta", "cli"}} {
			_, _ = op.Delete(dctx, client.Ref{Kind: v1.KindWorkload, Tenant: w.tenant, Name: w.name})
		}
		// The agents remove the replicas, and with them their links.
		for _, ns := range nsOf {
			for {
				out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput()
				if !strings.Contains(string(out), " rv") {
					break
				}
				if dctx.Err() != nil {
					t.Errorf("links left in %s two minutes after the workloads went:\n%s", ns, out)
					break
				}
				time.Sleep(300 * time.Millisecond)
			}
		}
	})

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
