package cli

import (
	"os/exec"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime/drivertest"
)

// TestDemoRunsReplicas is the end-to-end twin of `make demo`: it plans the
// examples and really runs the university and public-cloud replicas.
func TestDemoRunsReplicas(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "runsc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	// As `make demo` runs it (the current runsc it builds) and with
	// Debian's runsc in PATH: rung verify must read each one's state with
	// the runsc that wrote it (another one says "stopped").
	t.Run("current runsc", func(t *testing.T) { testDemo(t, drivertest.NetworkRunsc(t)) })
	t.Run("runsc in PATH", func(t *testing.T) { testDemo(t, "") })
}

func testDemo(t *testing.T, runsc string) {
	code, out, stderr := run(t, "demo", "--data-dir", drivertest.SearchableTempDir(t), "--runsc", runsc)
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"=== example four-questions",
		"7 replica(s) ran and were removed; 0 refused",
		"anonymous-playground-0           sandbox   started",
		"11 replica(s) ran and were removed",
		"rung verify (read from the live processes on the host)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// Every replica that ran was proven from its live processes.
	if strings.Contains(out, "FAIL") {
		t.Errorf("a replica failed verification:\n%s", out)
	}
	// Sandbox replicas' sentries run as their tenants' own host uids
	// (issue 19), never the shared host nobody.
	ok, weak := strings.Count(out, "  ok\n"), strings.Count(out, "  WEAK (see below)\n")
	if ok+weak < 18 {
		t.Errorf("%d replicas verified ok and %d weak, want 18 in all (7 university + 11 public-cloud):\n%s", ok, weak, out)
	}
	if strings.Contains(out, "the sentry runs as host uid 65534") {
		t.Errorf("a sandbox's sentry runs as host nobody:\n%s", out)
	}
}
