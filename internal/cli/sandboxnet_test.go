package cli

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

// sandboxNetManifest: two tenants on one node of a Topology with a tenant
// network; geo's workload asks for the sandbox tier.
const sandboxNetManifest = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: sblab}
spec:
  network: {pool: 10.206.0.0/16}
  nodes:
  - {name: sn1, capacity: {cpu: "4", memory: 8Gi}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {organization: acme, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: geo}
spec: {organization: acme, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: acme}
spec:
  image: busybox:latest
  command: [sh, -c, "echo acme-web > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp"]
  resources: {cpu: 100m, memory: 64Mi}
  isolation: {minimum: container}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: geo}
spec:
  image: busybox:latest
  command: [sh, -c, "echo geo-db > /tmp/index.html; exec busybox httpd -f -p 8080 -h /tmp"]
  replicas: 2
  resources: {cpu: 100m, memory: 64Mi}
  isolation: {minimum: sandbox}
`

// TestSandboxNetworkAgent: `rung agent --runsc` with a runsc that runs
// sandbox networks reports the sandbox tier in its heartbeat, the planner
// places geo's replicas (isolation minimum sandbox) on the networked node
// (until then they wait unplaced), they run under gVisor with addresses, reach each other, and can't
// reach acme's container.
func TestSandboxNetworkAgent(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	drivertest.RequireBinary(t, "ip")
	runsc := drivertest.NetworkRunsc(t)
	dir := drivertest.SearchableTempDir(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ns := netTestNS(t)
	for _, args := range [][]string{
		{"ip", "-n", ns, "link", "add", "nic0", "type", "veth", "peer", "name", "nic0p"},
		{"ip", "-n", ns, "addr", "add", "192.0.2.31/24", "dev", "nic0"},
		{"ip", "-n", ns, "link", "set", "nic0", "up"},
		{"ip", "-n", ns, "link", "set", "nic0p", "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	info, op := upControlPlane(t, dir, log, 5*time.Minute, sandboxNetManifest)
	ctx := t.Context()
	tr, err := op.CreateNodeToken(ctx, "sn1", "test agent")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := client.New(info.URL, tr.Token)
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := agentConfig{Node: "sn1", DataDir: filepath.Join(dir, "sn1"), Interval: 300 * time.Millisecond, Underlay: "192.0.2.31", NetNS: "/run/netns/" + ns, Runsc: runsc}
	go func() { done <- runAgent(actx, nc, cfg, log) }()
	// Cleanups run last first: the workloads go, then the agent, then
	// whatever it left is removed.
	t.Cleanup(func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		n, err := plugins.OpenNode(rctx, filepath.Join(dir, "sn1"), replica.Options{CgroupParent: "/rung/sn1"}, plugins.Config{Node: "sn1", NetNS: "/run/netns/" + ns})
		if err != nil {
			t.Errorf("open sn1 to clean up: %v", err)
			return
		}
		recs, _ := n.Records()
		for _, r := range recs {
			if err := n.Remove(rctx, r.Spec.ID); err != nil {
				t.Errorf("remove %s: %v", r.Spec.ID, err)
			}
		}
	})
	t.Cleanup(func() { stop(); <-done })
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, w := range []struct{ tenant, name string }{{"acme", "web"}, {"geo", "db"}} {
			_, _ = op.Delete(dctx, client.Ref{Kind: v1.KindWorkload, Tenant: w.tenant, Name: w.name})
		}
		for {
			out, _ := exec.Command("ip", "-n", ns, "-o", "link").CombinedOutput()
			if !strings.Contains(string(out), " rv") {
				break
			}
			if dctx.Err() != nil {
				t.Errorf("links left two minutes after the workloads went:\n%s", out)
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
	})

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
