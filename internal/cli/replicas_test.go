package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// TestReplicasAsUser is the path of a newcomer whose workload can't start:
// apply a workload whose command does not exist in the image, and see it
// failing with the runtime's reason in `get replicas` (text and JSON) and
// `describe workload`, never as running; a healthy neighbour shows
// running. Then a workload that can't be placed makes apply exit 3 with
// the reasons, and one without an image is refused, naming spec.image.
func TestReplicasAsUser(t *testing.T) {
	startUpWithAgent(t)
	dir := t.TempDir()
	manifests := filepath.Join(dir, "app.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(manifests, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`apiVersion: rung.dev/v1
kind: Topology
metadata: {name: one}
spec:
  nodes:
  - {name: n1, capacity: {cpu: 4, memory: 4Gi}, runtimes: [container]}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: shop}
spec: {organization: shop, trust: trusted}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: broken, tenant: shop}
spec:
  image: busybox:latest
  command: ["/bin/srv", "--serve"]
  resources: {cpu: 100m, memory: 32Mi}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: web, tenant: shop}
spec:
  image: busybox:latest
  command: ["sleep", "3600"]
  resources: {cpu: 100m, memory: 32Mi}
`)
	if code, _, stderr := rungCmd(t, "apply", "-f", manifests); code != ExitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	var replicas wire.Replicas
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, out, stderr := rungCmd(t, "get", "replicas", "--tenant", "shop", "-o", "json")
		if code != ExitOK {
			t.Fatalf("get replicas -o json: exit %d: %s", code, stderr)
		}
		replicas = wire.Replicas{}
		if err := json.Unmarshal([]byte(out), &replicas); err != nil {
			t.Fatalf("get replicas -o json: %v\n%s", err, out)
		}
		byName := map[string]wire.Replica{}
		for _, r := range replicas.Items {
			byName[r.Workload] = r
		}
		b, w := byName["shop/broken"], byName["shop/web"]
		if b.Restarts >= 1 && w.State == wire.ReplicaRunning && w.Health != wire.HealthStarting {
			if b.State != wire.ReplicaRestarting || b.Ready || b.LastError != "executable /bin/srv not found in image" {
				t.Errorf("the broken replica shows %+v", b)
			}
			if !w.Ready || w.Health != wire.HealthHealthy {
				t.Errorf("the healthy replica shows %+v (busybox's HEALTHCHECK passes)", w)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas never settled: %+v", replicas.Items)
		}
	}
	code, out, _ := rungCmd(t, "get", "replicas", "shop/broken")
	if code != ExitOK || !strings.Contains(out, "restarting") || !strings.Contains(out, "executable /bin/srv not found in image") {
		t.Errorf("get replicas shop/broken: exit %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "describe", "workload", "shop/broken")
	if code != ExitOK || !strings.Contains(out, "Replicas:") || !strings.Contains(out, "replica 0 last error: executable /bin/srv not found in image") {
		t.Errorf("describe workload: exit %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "get", "replicas", "shop/web/0", "-o", "name")
	if code != ExitOK || strings.TrimSpace(out) != "replica/shop/web/0" {
		t.Errorf("get replicas -o name: exit %d %q", code, out)
	}
	if code, _, _ := rungCmd(t, "get", "replicas", "shop/web/7"); code == ExitOK {
		t.Error("a replica that does not exist was found")
	}

	// 64 cores fit nowhere: apply exits 3 with the planner's reasons.
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: huge, tenant: shop}
spec: {image: busybox:latest, resources: {cpu: 64, memory: 32Mi}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := rungCmd(t, "apply", "-f", big)
	if code != ExitUnplaced || !strings.Contains(stderr, "shop/huge[0]") || !strings.Contains(stderr, "cpu") {
		t.Errorf("apply of an unplaceable workload: exit %d, want %d\n%s", code, ExitUnplaced, stderr)
	}
	noImage := filepath.Join(dir, "noimage.yaml")
	if err := os.WriteFile(noImage, []byte(`apiVersion: rung.dev/v1
kind: Workload
metadata: {name: blank, tenant: shop}
spec: {resources: {cpu: 100m, memory: 32Mi}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = rungCmd(t, "apply", "-f", noImage)
	if code != ExitInvalid || !strings.Contains(stderr, "spec.image") {
		t.Errorf("apply without an image: exit %d, want %d naming spec.image\n%s", code, ExitInvalid, stderr)
	}
	if code, _, stderr := rungCmd(t, "delete", "-f", big, "-f", manifests); code != ExitOK {
		t.Errorf("delete: exit %d: %s", code, stderr)
	}
}
