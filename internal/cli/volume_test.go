package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVolumeCommands: rung apply, get, describe and delete volume on a
// real control plane; explain names a volume's and a residency's reason.
func TestVolumeCommands(t *testing.T) {
	startUp(t)
	if code, _, errs := rungCmd(t, "apply", "-f", "../../examples/university"); code != 0 {
		t.Fatalf("apply: %d %s", code, errs)
	}
	f := filepath.Join(t.TempDir(), "vol.yaml")
	manifest := `apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pg, tenant: biology}
spec: {size: 1Gi, dataClass: confidential}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: biology}
spec:
  image: busybox:latest
  resources: {cpu: 100m, memory: 64Mi}
  volumes: [{name: pg, mountPath: /var/lib/pg}]
  placement: {domains: {rack: [no-such-rack]}}
`
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	// The workload can't be placed: exit 3, and the reason names the fix.
	code, out, errs := rungCmd(t, "apply", "-f", f)
	if code != 3 || !strings.Contains(out+errs, "residency") || !strings.Contains(out+errs, "widen spec.placement.domains.rack") {
		t.Errorf("apply a workload whose residency excludes every node: %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = rungCmd(t, "get", "volumes")
	if rows := lines(out); code != 0 || len(rows) != 2 || rows[1] != "biology pg 1Gi confidential" {
		t.Errorf("get volumes: %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "get", "vol", "pg", "-o", "wide")
	if code != 0 || !strings.Contains(out, "UID") {
		t.Errorf("get vol pg -o wide: %d\n%s", code, out)
	}
	code, out, _ = rungCmd(t, "describe", "volume", "pg")
	if code != 0 || !strings.Contains(out, "Volume biology/pg") && !strings.Contains(out, "biology/pg") || !strings.Contains(out, "uid:") {
		t.Errorf("describe volume pg: %d\n%s", code, out)
	}
	code, _, errs = rungCmd(t, "delete", "volume", "biology/pg")
	if code == 0 || !strings.Contains(errs, "mounted by workload(s) db") {
		t.Errorf("delete a mounted volume: %d %s", code, errs)
	}
	if code, _, errs := rungCmd(t, "delete", "workload", "biology/db"); code != 0 {
		t.Fatalf("delete workload: %d %s", code, errs)
	}
	if code, out, errs := rungCmd(t, "delete", "volume", "pg", "--tenant", "biology"); code != 0 {
		t.Errorf("delete volume: %d %s %s", code, out, errs)
	}
	if code, out, _ := rungCmd(t, "get", "volumes"); code != 0 || len(lines(out)) > 1 && lines(out)[0] != "" {
		t.Errorf("get volumes after delete: %d\n%q", code, out)
	}
}
