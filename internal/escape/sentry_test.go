package escape_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	rt "rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/uidrange"
	"rung.dev/rung/internal/verify"
)

// TestSentrySeparation shows what separates two tenants' gVisor sandboxes
// on the host (issue 19 item 2). runsc run as host root maps every
// sandbox's nobody to host nobody (65534); the driver runs runsc as root
// of a user namespace mapped to the tenant's uid range instead, so each
// sentry runs as its tenant's nobody, host uid HostUID+65534. The sentry
// stays in the host's PID namespace (the ptrace platform needs it), so
// this test runs a process with sentry A's credentials (its uid and gid,
// inside its user namespace) on the host and shows what it can do:
//
//   - sentry B: ptrace and signal both refused with EPERM (another uid,
//     another user namespace). gVisor's own seccomp filter allows tgkill
//     with any pid (TestSentrySeccompSignals), so the kernel's uid check is
//     what stops a compromised sentry from killing other tenants' sandboxes;
//   - its own sentry A: the signal is allowed (the positive control: the
//     credentials are A's, and signals do reach a sentry from them).
//
// Controls: both sentries run as their tenant's nobody with Seccomp 2 (the
// premise); host root reaches both; the tenant's own control of its
// replica still works through the driver (exec, then stop).
func TestSentrySeparation(t *testing.T) {
	forEachTier(t, func(t *testing.T, tr tier) {
		if !tr.sandbox() {
			t.Skip("sentries are the sandbox tier's")
		}
		opts := []bundle.Opt{bundle.WithResources(250, 128<<20, 96)}
		ra, rb := drivertest.Range(t, tenantA), drivertest.Range(t, tenantB)
		pidA := start(t, tr, "sentry-a", replicaBundle(t, ra, "sentry-a", "sleep 600", nil, opts...))
		pidB := start(t, tr, "sentry-b", replicaBundle(t, rb, "sentry-b", "sleep 600", nil, opts...))
		for _, c := range []struct {
			pid int
			r   uidrange.Range
		}{{pidA, ra}, {pidB, rb}} {
			want := strconv.Itoa(int(c.r.HostUID) + verify.Nobody)
			// Seccomp 2 is set once the sentry runs the workload: polled.
			var st map[string]string
			for deadline := time.Now().Add(2 * time.Minute); ; {
				st = procStatus(t, c.pid)
				if st["Seccomp"] == "2" || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !strings.HasPrefix(st["Uid"], want+"\t") || st["Seccomp"] != "2" {
				t.Fatalf("sentry %d: Uid %q Seccomp %q, want the tenant's nobody %s and 2", c.pid, st["Uid"], st["Seccomp"], want)
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
		// Sentry A's credentials: its user namespace, uid and gid 65534
		// there (the tenant's nobody on the host).
		asA := reach(t, exec.Command("nsenter", "-t", a, "-U", "-S", "65534", "-G", "65534", "--", probeBin, "reach", a, b))
		t.Logf("with sentry A's credentials: %v", asA)
		if asA["signal-"+a] != "ok" {
			t.Fatalf("control: sentry A's credentials signal sentry A: %q, want ok (%v)", asA["signal-"+a], asA)
		}
		for _, k := range []string{"signal-" + b, "ptrace-" + b} {
			if asA[k] != "EPERM" {
				t.Errorf("sentry A's credentials: %s = %q, want EPERM", k, asA[k])
			}
		}

		// The tenant's own control of its sandboxes still works.
		var out bytes.Buffer
		code, err := tr.d.Exec(t.Context(), "sentry-b", []string{"echo", "still mine"}, rt.ExecIO{Stdout: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "still mine" {
			t.Fatalf("exec in sentry-b: code %d, %v, output %q", code, err, out.String())
		}
		if err := tr.d.Kill(t.Context(), "sentry-a", syscall.SIGKILL); err != nil {
			t.Fatalf("stop sentry-a: %v", err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if _, err := tr.d.Wait(ctx, "sentry-a"); err != nil {
			t.Fatalf("wait for sentry-a: %v", err)
		}
		if err := tr.d.Delete(ctx, "sentry-a"); err != nil {
			t.Fatalf("delete sentry-a: %v", err)
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
