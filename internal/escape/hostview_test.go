package escape_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
)

// node opens a replica.Node in a fresh data directory with a busybox
// image: the host-details checks need rung's own bundle layout.
func node(t *testing.T) *replica.Node {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "busybox")
	n, err := replica.Open(t.Context(), drivertest.SearchableTempDir(t), replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Images().Pack(t.Context(), root, "busybox:latest", image.PackOptions{Healthcheck: image.BusyboxHealthcheck()}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHostDetailsHidden: a replica of each tier, made by rung's own
// node code, sees nothing of the host's kernel command line or disks, its
// mountinfo names no directory of the data directory, and its stdout and
// stderr are pipes made for it (no host file). Controls: what programs
// need (/proc/cpuinfo, /proc/meminfo) stays readable, and mountinfo is
// read (it has the root mount).
func TestHostDetailsHidden(t *testing.T) {
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
echo "fd1=$(stat -L -c %F /proc/$$/fd/1)"
echo "fd2=$(stat -L -c %F /proc/$$/fd/2)"
echo ---
cat /proc/self/mountinfo`
			// stdout is a host file, as with `rung run … > file`: the
			// replica must still get a pipe of its own.
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			before, _ := os.Stat(out.Name())
			var errb bytes.Buffer
			spec := replica.Spec{ID: "view-" + tier.String(), Tenant: "view", Tier: tier, Image: "busybox:latest",
				Args: []string{"sh", "-c", script}}
			if _, err := n.Run(t.Context(), spec, runtime.IO{Stdout: out, Stderr: &errb}); err != nil {
				t.Fatalf("run: %v\n%s", err, errb.String())
			}
			// Nothing outside the replica changes owner or mode.
			if after, _ := os.Stat(out.Name()); fileOwner(after) != fileOwner(before) {
				t.Errorf("stdout file: %s before, %s after", fileOwner(before), fileOwner(after))
			}
			b, err := os.ReadFile(out.Name())
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
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
			if !regexp.MustCompile(`(?m)^\S+ \S+ \S+ \S+ / `).MatchString(mountinfo) {
				t.Fatalf("control: mountinfo without the root mount: %q", mountinfo)
			}
			for _, k := range []string{"fd1", "fd2"} {
				if got[k] != "fifo" {
					t.Errorf("%s is %q, want a pipe made for the replica", k, got[k])
				}
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

func fileOwner(fi os.FileInfo) string {
	if fi == nil {
		return "missing"
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d %v", st.Uid, st.Gid, fi.Mode())
}
