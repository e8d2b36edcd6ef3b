package cli

import (
	"os/exec"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime/drivertest"
)

// TestRunCommand runs one-off replicas through the CLI: output streams,
// the exit code is the replica's, and a tier that can't run here is
// refused rather than run weaker.
func TestRunCommand(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "runsc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	dir := drivertest.SearchableTempDir(t)
	if code, _, stderr := run(t, "image", "--data-dir", dir, "pack", "--busybox", "--tag", "busybox:latest"); code != ExitOK {
		t.Fatalf("pack: exit %d: %s", code, stderr)
	}
	for _, tier := range []string{"container", "sandbox"} {
		code, out, stderr := run(t, "run", "--data-dir", dir, "--tenant", "biology", "--tier", tier, "busybox:latest", "--",
			"sh", "-c", "echo hello from $(hostname); grep Seccomp: /proc/self/status; exit 5")
		if code != 5 {
			t.Errorf("%s: exit %d, want 5 (stderr %s)", tier, code, stderr)
		}
		if !strings.Contains(out, "hello from run-biology-") || !strings.Contains(out, "Seccomp:\t2") {
			t.Errorf("%s: output %q", tier, out)
		}
	}
	code, out, stderr := run(t, "run", "--data-dir", dir, "--tenant", "acme", "--tier", "vm", "busybox:latest", "--", "echo", "ran")
	if code == ExitOK || strings.Contains(out, "ran") || !strings.Contains(stderr, "vm") {
		t.Errorf("vm tier: exit %d out %q stderr %q; want a refusal naming the vm tier", code, out, stderr)
	}
	if code, _, _ := run(t, "run", "--data-dir", dir, "--tenant", "acme", "--tier", "steel", "busybox:latest"); code != ExitInvalid {
		t.Errorf("bad tier: exit %d, want %d", code, ExitInvalid)
	}
	if code, _, _ := run(t, "run", "--data-dir", dir, "busybox:latest"); code != ExitInvalid {
		t.Errorf("no tenant: exit %d, want %d", code, ExitInvalid)
	}
}
