package replica_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
)

// A replica of each tier sees nothing of the host's kernel command line or
// disks, and its mountinfo names no directory of the data directory; what
// programs need (/proc/cpuinfo, /proc/meminfo) stays readable (the control).
func TestReplicaHostView(t *testing.T) {
	n := node(t)
	for _, tier := range []tenancy.Tier{tenancy.Container, tenancy.Sandbox} {
		t.Run(tier.String(), func(t *testing.T) {
			if _, err := n.Driver(t.Context(), tier); err != nil {
				t.Skipf("tier unavailable: %v", err)
			}
			script := `echo "cmdline=$(cat /proc/cmdline 2>&1 | head -c 300)"
echo "partitions=$(cat /proc/partitions 2>/dev/null | wc -l)"
echo "diskstats=$(cat /proc/diskstats 2>/dev/null | wc -l)"
echo "sysblock=$(ls /sys/block 2>/dev/null | wc -l)"
echo "cpuinfo=$(grep -c ^processor /proc/cpuinfo)"
echo "meminfo=$(grep -c ^MemTotal /proc/meminfo)"
echo ---
cat /proc/self/mountinfo`
			var out, errb bytes.Buffer
			spec := replica.Spec{ID: "view-" + tier.String(), Tenant: "view", Tier: tier, Image: "busybox:latest",
				Args: []string{"sh", "-c", script}}
			if _, err := n.Run(t.Context(), spec, runtime.IO{Stdout: &out, Stderr: &errb}); err != nil {
				t.Fatalf("run: %v\n%s", err, errb.String())
			}
			s := out.String()
			t.Logf("%s", s)
			head, mountinfo, _ := strings.Cut(s, "---\n")
			got := map[string]string{}
			for _, l := range strings.Split(head, "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					got[k] = v
				}
			}
			for _, k := range []string{"partitions", "diskstats", "sysblock"} {
				if got[k] != "0" {
					t.Errorf("%s: %s lines, want none", k, got[k])
				}
			}
			host := readHost(t, "/proc/cmdline")
			if c := got["cmdline"]; c != "" && (strings.Contains(host, c) || strings.Contains(c, "root=")) {
				t.Errorf("/proc/cmdline shows the host's: %q", c)
			}
			if got["cpuinfo"] == "0" || got["cpuinfo"] == "" || got["meminfo"] != "1" {
				t.Errorf("control: cpuinfo %q, meminfo %q: want them readable", got["cpuinfo"], got["meminfo"])
			}
			if mountinfo == "" {
				t.Fatal("no mountinfo read")
			}
			if strings.Contains(mountinfo, n.Dir()) || strings.Contains(mountinfo, "/replicas/") {
				t.Errorf("mountinfo names the data directory %s:\n%s", n.Dir(), mountinfo)
			}
		})
	}
}

func readHost(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
