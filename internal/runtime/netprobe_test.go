package runtime_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// TestProbeSandboxNetwork: the probe starts a real sandbox with
// --network=sandbox. A current runsc passes it; Debian 12's runsc fails it
// (when it is the runsc in PATH), so the node keeps --network=none and
// refuses sandbox networks.
func TestProbeSandboxNetwork(t *testing.T) {
	drivertest.RequireRoot(t)
	current := drivertest.NetworkRunsc(t)
	dir := drivertest.SearchableTempDir(t)
	if err := runtime.ProbeSandboxNetwork(t.Context(), runtime.Config{Binary: current, Dir: filepath.Join(dir, "current")}); err != nil {
		t.Fatalf("current runsc %s: %v", current, err)
	}
	old := drivertest.RequireBinary(t, "runsc")
	v, _ := exec.Command(old, "--version").Output()
	if !strings.Contains(string(v), "20221219") {
		t.Skipf("%s is not Debian 12's runsc (%s): no known-failing runsc to refuse", old, v)
	}
	err := runtime.ProbeSandboxNetwork(t.Context(), runtime.Config{Binary: old, Dir: filepath.Join(dir, "old")})
	if !errors.Is(err, runtime.ErrNoSandboxNetwork) {
		t.Fatalf("Debian's runsc: got %v, want ErrNoSandboxNetwork", err)
	}
	t.Logf("refused: %v", err)
}
