package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const topoYAML = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: t}
spec:
  nodes:
  - {name: h1, domains: {datacenter: dc1}, capacity: {cpu: 4, memory: 8Gi}}
  - {name: h2, domains: {datacenter: dc2}, capacity: {cpu: 4, memory: 8Gi}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
`

func TestPlanExitCodesAndJSON(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "topo.yaml", topoYAML)
	ok := write(t, dir, "ok.yaml", `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: api, tenant: acme}
spec: {image: x, replicas: 2, resources: {cpu: 1, memory: 1Gi}, spread: [{level: datacenter, minDomains: 2}]}
`)
	code, out, stderr := run(t, "plan", "-f", filepath.Join(dir, "topo.yaml"), "-f", ok, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	// The JSON contract of DESIGN §5: exactly these keys.
	var raw map[string][]map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("output is not the plan object: %v\n%s", err, out)
	}
	if len(raw["placements"]) != 2 || len(raw["unplaced"]) != 0 {
		t.Fatalf("placements %d unplaced %d", len(raw["placements"]), len(raw["unplaced"]))
	}
	var keys []string
	for k := range raw["placements"][0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if got, want := strings.Join(keys, ","), "host,node,reason,replica,tier,workload"; got != want {
		t.Errorf("placement keys %s, want %s", got, want)
	}
	if w := raw["placements"][0]["workload"]; w != "acme/api" {
		t.Errorf("workload = %v, want acme/api", w)
	}

	// Unplaceable: exit 3 and reasons in JSON.
	bad := write(t, dir, "bad.yaml", `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: api, tenant: acme}
spec: {image: x, replicas: 3, resources: {cpu: 1, memory: 1Gi}, spread: [{level: datacenter, minDomains: 3}]}
`)
	code, out, _ = run(t, "plan", "-f", filepath.Join(dir, "topo.yaml"), "-f", bad, "-o", "json")
	if code != ExitUnplaced {
		t.Fatalf("exit %d, want %d", code, ExitUnplaced)
	}
	if !strings.Contains(out, "spread datacenter: needs 3 domains, 2 exist") {
		t.Errorf("reasons missing from %s", out)
	}

	// Invalid input: exit 2 naming file, line and field.
	inv := write(t, dir, "inv.yaml", "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: api, tenant: acme}\nspec: {image: x, replicas: 1, resources: {cpu: lots}}\n")
	code, _, stderr = run(t, "plan", "-f", filepath.Join(dir, "topo.yaml"), "-f", inv)
	if code != ExitInvalid || !strings.Contains(stderr, "inv.yaml:4") || !strings.Contains(stderr, "spec.resources.cpu") {
		t.Errorf("exit %d stderr %q, want 2 naming inv.yaml:4 and spec.resources.cpu", code, stderr)
	}
	if code, _, _ := run(t, "plan", "--nope"); code != ExitInvalid {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code, _, _ := run(t, "plan", "-f", filepath.Join(dir, "topo.yaml"), "--down", "rack"); code != ExitInvalid {
		t.Errorf("bad --down: exit %d, want 2", code)
	}
}

func TestPlanDownFrom(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "topo.yaml", topoYAML)
	write(t, dir, "w.yaml", `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: api, tenant: acme}
spec: {image: x, replicas: 2, resources: {cpu: 1, memory: 1Gi}, spread: [{level: datacenter, minDomains: 2}]}
`)
	code, out, stderr := run(t, "plan", "-f", dir, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d %s", code, stderr)
	}
	before := write(t, t.TempDir(), "before.json", out)
	code, out, _ = run(t, "plan", "-f", dir, "--from", before, "--down", "datacenter=dc1", "-o", "json")
	if code != ExitUnplaced {
		t.Fatalf("exit %d, want 3 (one datacenter left for a two-datacenter spread)\n%s", code, out)
	}
	var res struct {
		Placements []struct{ Node string }
		Problems   []string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Placements) != 1 || res.Placements[0].Node != "h2" {
		t.Errorf("survivor placements = %+v, want the h2 replica kept", res.Placements)
	}
	if len(res.Problems) == 0 || !strings.Contains(strings.Join(res.Problems, ";"), "spread datacenter can no longer be met") {
		t.Errorf("problems = %v", res.Problems)
	}
}

func TestExplainCommand(t *testing.T) {
	code, out, stderr := run(t, "explain", "-f", "../../examples/university", "biology/sequencer")
	if code != ExitOK {
		t.Fatalf("exit %d %s", code, stderr)
	}
	for _, want := range []string{"workload biology/sequencer: 3 replica(s)", "tier set by: rule", "rejected  spread"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := run(t, "explain", "-f", "../../examples/university", "nobody/none"); code != ExitInvalid {
		t.Errorf("unknown workload: exit %d, want 2", code)
	}
}
