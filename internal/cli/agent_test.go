package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/verify"
)

// TestUpRunsReplicas is the README's control-plane demo with the node
// agent: `rung up`, apply the university example, the replicas really run
// under runc and verify from their live processes; delete, and the agent
// removes them.
func TestUpRunsReplicas(t *testing.T) {
	data := startUpWithAgent(t)
	example := filepath.Join("..", "..", "examples", "university")
	if code, _, stderr := rungCmd(t, "apply", "-f", example); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	reps := waitReplicas(t, data, 7)
	for _, r := range reps {
		if !r.Holds() || r.Tier != "container" {
			t.Errorf("replica %s tier %s holds %v: %+v", r.ID, r.Tier, r.Holds(), r.Failures())
		}
	}
	// The agent's states reach the metrics.
	cfg, err := client.LoadConfig(filepath.Join(data, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := `rung_replicas{state="running",tier="container"} 7`
	var body string
	for range 100 {
		req, _ := http.NewRequest("GET", cfg.Server+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+cfg.Token) // operators only
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, want) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, want) {
		t.Errorf("metrics lack %q", want)
	}
	if code, _, stderr := rungCmd(t, "delete", "-f", filepath.Join(example, "workloads.yaml")); code != ExitOK {
		t.Fatalf("delete: exit %d: %s", code, stderr)
	}
	waitReplicas(t, data, 0)
}

// startUpWithAgent runs `rung up` with its node agent in a data directory
// the tenants' UID ranges can traverse, and removes every replica at the
// end whatever happened. It skips without root, runc or busybox.
func startUpWithAgent(t *testing.T) string {
	t.Helper()
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	data, _ := startUpIn(t, drivertest.SearchableTempDir(t))
	t.Cleanup(func() {
		node, err := replica.Open(context.Background(), data, replica.Options{})
		if err != nil {
			return
		}
		recs, _ := node.Records()
		for _, r := range recs {
			_ = node.Remove(context.Background(), r.Spec.ID)
		}
	})
	return data
}

// waitReplicas polls `rung verify`'s view of data until n replicas run.
func waitReplicas(t *testing.T, data string, n int) []verify.Replica {
	t.Helper()
	var reps []verify.Replica
	var err error
	for range 300 {
		reps, err = verifyReplicas(t.Context(), data, nil)
		running := 0
		for _, r := range reps {
			if r.Status == "running" {
				running++
			}
		}
		if err == nil && running == n && len(reps) == n {
			return reps
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("want %d running replicas, have %d (err %v)", n, len(reps), err)
	return nil
}

// TestGetNodes: operators list node agents; a node token's heartbeat makes
// its node appear as up.
func TestGetNodes(t *testing.T) {
	startUp(t)
	code, out, stderr := rungCmd(t, "token", "create", "--role", "node", "--node", "h1")
	if code != ExitOK {
		t.Fatalf("token create: exit %d: %s", code, stderr)
	}
	token := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	path, err := client.DefaultConfigPath()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := client.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg.Server, token)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Heartbeat(t.Context(), "h1", wire.Heartbeat{Runtimes: []string{"container"}}); err != nil {
		t.Fatalf("heartbeat with %q: %v", token, err)
	}
	code, out, stderr = rungCmd(t, "get", "nodes")
	if code != ExitOK || !strings.Contains(out, "h1") || !strings.Contains(out, "up") || !strings.Contains(out, "without a heartbeat") {
		t.Errorf("get nodes: exit %d\n%s%s", code, out, stderr)
	}
}

// TestUpPlansWhatThisMachineRuns: `rung up`'s own agent reports what this
// machine can run, and the plan offers nothing else. The public-cloud
// example's nodes list vm, but this machine can't boot a guest: the plan
// has no vm replica, and every replica it places really runs and holds.
func TestUpPlansWhatThisMachineRuns(t *testing.T) {
	data := startUpWithAgent(t)
	probe, err := replica.Open(t.Context(), drivertest.SearchableTempDir(t), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	here := probe.Runtimes(t.Context())
	if !here.Has(tenancy.Sandbox) {
		t.Skipf("runsc not available here (%s): the example needs sandbox or vm", here)
	}
	example := filepath.Join("..", "..", "examples", "public-cloud")
	applied, _, applyErr := rungCmd(t, "apply", "-f", example)
	if applied != ExitOK && applied != ExitUnplaced {
		t.Fatalf("apply: exit %d: %s", applied, applyErr)
	}
	code, out, stderr := rungCmd(t, "get", "plan", "-o", "json")
	if code != ExitOK {
		t.Fatalf("get plan: exit %d: %s", code, stderr)
	}
	var res scheduler.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// apply exits 3 exactly when some replica is unplaced (DESIGN §8).
	if want := map[bool]int{false: ExitOK, true: ExitUnplaced}[len(res.Unplaced) > 0]; applied != want {
		t.Errorf("apply exited %d with %d replica(s) unplaced, want %d: %s", applied, len(res.Unplaced), want, applyErr)
	}
	tiers := map[string]int{}
	for _, p := range res.Placements {
		tier, err := tenancy.ParseTier(v1.Tier(p.Tier))
		if err != nil || !here.Has(tier) {
			t.Errorf("%s[%d] planned at %s on %s; this machine runs %s", p.Workload, p.Replica, p.Tier, p.Node, here)
		}
		tiers[p.Tier]++
	}
	if len(res.Placements) == 0 {
		t.Fatalf("nothing placed: unplaced %+v", res.Unplaced)
	}
	t.Logf("placed by tier %v, unplaced %d", tiers, len(res.Unplaced))
	reps := waitReplicas(t, data, len(res.Placements))
	for _, r := range reps {
		if !r.Holds() {
			t.Errorf("replica %s (%s) does not hold: %+v", r.ID, r.Tier, r.Failures())
		}
	}
}

// TestUpAuditsNodeImageDecisions: under `rung up`, an image that fails the
// node's image checks (it runs as root) never runs, and the node's decision
// reaches the audit log with the image's digest and the finding, where
// `rung get events` shows it.
func TestUpAuditsNodeImageDecisions(t *testing.T) {
	data := startUpWithAgent(t)
	ctx := t.Context()
	store, err := image.Open(ctx, data) // the node's own store (DATA/images)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	digest, err := store.Pack(ctx, root, "asroot:1", image.PackOptions{User: "0"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, dir, "lab.yaml", `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: lab}
spec: {organization: lab, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: probe, tenant: lab}
spec:
  image: asroot:1
  command: ["/bin/sh", "-c", "sleep 3600"]
  resources: {cpu: 100m, memory: 32Mi}
`)
	if code, _, stderr := rungCmd(t, "apply", "-f", filepath.Join("..", "..", "examples", "university", "topology.yaml"), "-f", filepath.Join(dir, "lab.yaml")); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	var found *wire.Event
	for range 100 {
		code, out, _ := rungCmd(t, "get", "events", "-o", "json")
		var evs wire.Events
		if code == ExitOK && json.Unmarshal([]byte(out), &evs) == nil {
			for i, ev := range evs.Events {
				if ev.Action == "admit" && ev.Kind == "Image" && ev.Tenant == "lab" {
					found = &evs.Events[i]
				}
			}
		}
		if found != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if found == nil {
		_, w, _ := rungCmd(t, "get", "workloads")
		_, ev, _ := rungCmd(t, "get", "events")
		t.Fatalf("no admit event for lab's image within 10s\n%s\n%s", w, ev)
	}
	if found.Result != "rejected" || found.Name != "asroot:1" || !strings.HasPrefix(found.Actor, "node/") {
		t.Errorf("event %+v, want node/… rejected asroot:1", found)
	}
	if !strings.Contains(found.Message, digest.String()) || !strings.Contains(found.Message, "CIS-4.1") {
		t.Errorf("event message %q, want the digest %s and CIS-4.1", found.Message, digest)
	}
	if reps, _ := verifyReplicas(ctx, data, nil); len(reps) != 0 {
		t.Errorf("the rejected image runs: %+v", reps)
	}
}
