package runtime_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// TestRuncExec: an exec'd process is confined like the replica, shown by
// its own live status (the container's seccomp filter: Seccomp 2).
func TestRuncExec(t *testing.T) {
	d := newRunc(t)
	r := drivertest.Range(t, 1)
	drivertest.RunExec(t, d, "runc", drivertest.Busybox(r), func(t *testing.T, status string, exec func(...string) string) {
		if v := statusField(t, status, "Seccomp"); v != "2" {
			t.Errorf("Seccomp of the exec'd process = %s, want 2 (the replica's filter)", v)
		}
		if v := statusField(t, status, "NoNewPrivs"); v != "1" {
			t.Errorf("NoNewPrivs of the exec'd process = %s, want 1", v)
		}
		// In the replica's user namespace: root inside is the tenant's base.
		if f := strings.Fields(exec("cat", "/proc/self/uid_map")); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(r.HostUID) {
			t.Errorf("uid_map of the exec'd process = %v, want 0 %d SIZE", f, r.HostUID)
		}
	})
	checkNoZombies(t)
}

// TestRunscExec: an exec'd process runs inside the sandbox's own kernel
// (gVisor's, which boots with its own log and version), not on the host's.
func TestRunscExec(t *testing.T) {
	d := newRunsc(t, runtime.Config{})
	drivertest.RunExec(t, d, "runsc", drivertest.Busybox(drivertest.Range(t, 9)), func(t *testing.T, _ string, exec func(...string) string) {
		host, err := os.ReadFile("/proc/version")
		if err != nil {
			t.Fatal(err)
		}
		if guest := exec("cat", "/proc/version"); guest == string(host) || !strings.HasPrefix(guest, "Linux version") {
			t.Errorf("/proc/version inside the sandbox = %q, want gVisor's own, not the host's %q", guest, host)
		}
	})
	checkNoZombies(t)
}
