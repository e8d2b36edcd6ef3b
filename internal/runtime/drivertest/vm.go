package drivertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// BuildVMInit builds cmd/rung-vm, the guest's init that the vm tier
// boots, into dir and returns its path.
func BuildVMInit(dir string) (string, error) {
	p := filepath.Join(dir, "rung-vm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", p, "rung.dev/rung/cmd/rung-vm")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build rung-vm: %v: %s", err, out)
	}
	return p, nil
}

// RequireQEMU skips a vm-tier test when qemu (microvm.DefaultBinary) is
// not installed; CI installs qemu-system-x86.
func RequireQEMU(t testing.TB, qemu string) {
	t.Helper()
	if _, err := exec.LookPath(qemu); err != nil {
		t.Skipf("%s not installed (apt-get install qemu-system-x86): %v", qemu, err)
	}
}

// RequireVMTier skips a vm-tier test when the tier's detection says there
// is no guest kernel (CI installs linux-image-amd64) and fails it when the
// tier is unavailable for another reason: with emulation allowed it must
// run.
func RequireVMTier(t testing.TB, available bool, reason string) {
	t.Helper()
	if available {
		return
	}
	if strings.Contains(reason, "guest kernel") {
		t.Skipf("no guest kernel (apt-get install linux-image-amd64): %s", reason)
	}
	t.Fatalf("vm tier unavailable with emulation allowed: %s", reason)
}

// StartVMHelper runs this test binary's test run (a helper that starts a
// vm replica, prints QEMU_PID=N and waits, as an agent) with env added,
// and returns the helper and its QEMU's pid; both are killed when the test
// ends. This process becomes the child subreaper first: QEMU outlives a
// killed helper only as a zombie of this process's descendants, which
// keeps its cgroup busy; as its reaper (the host's init is, for an agent)
// this process reaps it at once.
func StartVMHelper(t *testing.T, ctx context.Context, run string, env ...string) (*exec.Cmd, int) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+run+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var pid int
	buf := make([]byte, 4096)
	var got []byte
	for pid == 0 {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("helper ended before it started the vm: %v: %s", err, got)
		}
		for _, l := range strings.Split(string(got), "\n") {
			fmt.Sscanf(l, "QEMU_PID=%d", &pid)
		}
	}
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	})
	return cmd, pid
}
