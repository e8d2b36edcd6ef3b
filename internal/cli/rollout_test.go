package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/testio"
)

// TestRolloutAsUser: six real replicas over three racks (at most two a
// rack), a new version applied with maxUnavailable 1: while it rolls out,
// never fewer than five replicas are ready and never three in a rack;
// rung rollout status waits for the end; history lists the old version
// and undo brings it back.
func TestRolloutAsUser(t *testing.T) {
	startUpWithAgent(t)
	dir := t.TempDir()
	manifest := func(version string) string {
		p := filepath.Join(dir, "v"+version+".yaml")
		body := `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: racks}
spec:
  nodes:
  - {name: n1, domains: {rack: r1}, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container]}
  - {name: n2, domains: {rack: r2}, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container]}
  - {name: n3, domains: {rack: r3}, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container]}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: shop}
spec: {organization: shop, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: shop}
spec:
  image: busybox:latest
  command: ["sleep", "3600"]
  env: {VERSION: "` + version + `"}
  replicas: 6
  resources: {cpu: 100m, memory: 32Mi}
  spread: [{level: rack, maxPerDomain: 2}]
  rollout: {maxUnavailable: 1, maxSurge: 0}
`
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := manifest("1")
	if code, _, stderr := rungCmd(t, "apply", "-f", first); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	t.Cleanup(func() { rungCmd(t, "delete", "-f", first) })
	if code, out, stderr := rungCmd(t, "rollout", "status", "shop/web", "--timeout", "3m"); code != ExitOK {
		t.Fatalf("first rollout: exit %d\n%s%s", code, out, stderr)
	}
	replicas := func() []wire.Replica {
		t.Helper()
		_, out, _ := rungCmd(t, "get", "replicas", "shop/web", "-o", "json")
		var rs wire.Replicas
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatalf("get replicas: %v\n%s", err, out)
		}
		return rs.Items
	}
	v1Template := replicas()[0].Template
	if code, _, stderr := rungCmd(t, "apply", "-f", manifest("2")); code != ExitOK {
		t.Fatalf("apply v2: exit %d: %s", code, stderr)
	}
	var out testio.Buffer
	done := make(chan int, 1)
	go func() { done <- runCP(t.Context(), &out, &out, "rollout", "status", "shop/web", "--timeout", "4m") }()
	polls, minReady := 0, 6
	for finished := false; !finished; {
		select {
		case code := <-done:
			if code != ExitOK {
				t.Fatalf("rollout status: exit %d\n%s", code, out.String())
			}
			finished = true
		case <-time.After(300 * time.Millisecond):
		}
		rs := replicas()
		polls++
		ready := 0
		perNode := map[string]int{}
		for _, r := range rs {
			if r.Ready {
				ready++
			}
			perNode[r.Node]++
		}
		minReady = min(minReady, ready)
		if ready < 5 {
			t.Errorf("%d replicas ready during the rollout, under 5: %+v", ready, rs)
		}
		for n, k := range perNode {
			if k > 2 {
				t.Errorf("%d replicas on %s (one rack) during the rollout", k, n)
			}
		}
	}
	rs := replicas()
	for _, r := range rs {
		if r.Template == v1Template || !r.Ready {
			t.Errorf("after the rollout: %+v", r)
		}
	}
	if !strings.Contains(out.String(), "successfully rolled out") || polls < 3 {
		t.Errorf("rollout status (%d polls):\n%s", polls, out.String())
	}
	t.Logf("rollout watched over %d polls, at least %d ready", polls, minReady)

	if _, desc, _ := rungCmd(t, "describe", "workload", "shop/web"); !strings.Contains(desc, "Rollout: version") || !strings.Contains(desc, "6 of 6 replicas updated, 6 ready, done") {
		t.Errorf("describe after the rollout:\n%s", desc)
	}
	code, hist, _ := rungCmd(t, "rollout", "history", "shop/web")
	if code != ExitOK || !strings.Contains(hist, v1Template) || !strings.Contains(hist, "(current)") {
		t.Errorf("rollout history: exit %d\n%s", code, hist)
	}
	if code, o, e := rungCmd(t, "rollout", "undo", "shop/web"); code != ExitOK || !strings.Contains(o, "rolled back") {
		t.Fatalf("rollout undo: exit %d %s %s", code, o, e)
	}
	if code, o, e := rungCmd(t, "rollout", "status", "shop/web", "--timeout", "4m"); code != ExitOK {
		t.Fatalf("rollout status after undo: exit %d\n%s%s", code, o, e)
	}
	for _, r := range replicas() {
		if r.Template != v1Template {
			t.Errorf("after undo, replica %d runs %s, want %s", r.Index, r.Template, v1Template)
		}
	}
}
