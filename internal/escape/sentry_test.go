package escape_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/verify"
)

// TestSentrySeparation shows what separates two tenants' gVisor sandboxes
// on the host. runsc, run as root, maps every sandbox (sentry) process to
// host uid 65534 (runsc/sandbox: "Map nobody in the new namespace to
// nobody in the parent namespace"; only its rootless mode maps another
// uid, the caller's own, and it can't then apply the cgroup limits rung
// needs), and keeps it in the host's PID namespace for the ptrace
// platform. So the uid does not separate them. This test runs a process
// with sentry A's credentials (its host uid and gid, inside its user
// namespace) on the host and records what it can do to sentry B:
//
//   - ptrace is refused: B's user namespace is not A's (CAP_SYS_PTRACE
//     in A's namespace counts for nothing there) and B is not dumpable;
//   - a signal is NOT refused by the kernel: the uids are equal. What
//     remains is gVisor's own seccomp filter on the sentry (Seccomp: 2 on
//     both, checked here), and read from a live sentry it allows tgkill
//     with any pid: a compromised sentry can kill other tenants' sandboxes
//     (denial of service). rung verify reports this as WEAK, not "ok".
//     TestSentryUserNamespace shows the fix (each sentry its own uid).
//
// Controls: host root reaches both (the probe's calls work), and both
// sentries run as 65534 with Seccomp 2 (the premise).
func TestSentrySeparation(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		if !tr.sandbox() {
			t.Skip("sentries are the sandbox tier's")
		}
		opts := []bundle.Opt{bundle.WithResources(250, 128<<20, 96)}
		pidA := start(t, tr, "sentry-a", replicaBundle(t, drivertest.Range(t, tenantA), "sentry-a", "sleep 600", nil, opts...))
		pidB := start(t, tr, "sentry-b", replicaBundle(t, drivertest.Range(t, tenantB), "sentry-b", "sleep 600", nil, opts...))
		for _, pid := range []int{pidA, pidB} {
			st := procStatus(t, pid)
			if !strings.HasPrefix(st["Uid"], strconv.Itoa(verify.Nobody)+"\t") || st["Seccomp"] != "2" {
				t.Fatalf("sentry %d: Uid %q Seccomp %q, want %d and 2", pid, st["Uid"], st["Seccomp"], verify.Nobody)
			}
		}
		if ns(t, pidA, "user") == ns(t, pidB, "user") {
			t.Fatal("the two sentries share a user namespace")
		}
		probeBin := filepath.Join(drivertest.SearchableTempDir(t), "probe")
		copyFile(t, probe(t), probeBin, 0o755)
		a, b := strconv.Itoa(pidA), strconv.Itoa(pidB)

		// Control: host root reaches both sentries with the same calls.
		root := reach(t, exec.Command(probeBin, "reach", a, b))
		for _, k := range []string{"signal-" + a, "ptrace-" + a, "signal-" + b, "ptrace-" + b} {
			if root[k] != "ok" {
				t.Fatalf("control: host root %s = %q, want ok (%v)", k, root[k], root)
			}
		}
		// Sentry A's credentials: its user namespace, uid and gid 65534.
		asA := reach(t, exec.Command("nsenter", "-t", a, "-U", "-S", "65534", "-G", "65534", "--", probeBin, "reach", b))
		t.Logf("with sentry A's credentials: %v", asA)
		if asA["ptrace-"+b] == "ok" || asA["ptrace-"+b] == "" {
			t.Errorf("sentry A's credentials ptrace sentry B: %q, want refused", asA["ptrace-"+b])
		}
		// The weakness, pinned: if this starts failing, gVisor (or rung)
		// separated the uids, and verify's report must change with it.
		if asA["signal-"+b] != "ok" {
			t.Errorf("sentry A's credentials signal sentry B: %q; the kernel now refuses it: update verify's sentry report", asA["signal-"+b])
		}
	})
}

// reach runs probe reach and parses its "NAME RESULT" lines.
func reach(t *testing.T, cmd *exec.Cmd) map[string]string {
	t.Helper()
	cmd.Env = append(os.Environ(), "RUNG_ESCAPE_PROBE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func ns(t *testing.T, pid int, kind string) string {
	t.Helper()
	l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", kind))
	if err != nil {
		t.Fatal(err)
	}
	return l
}
