package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime/drivertest"
)

// TestDemoRunsVMReplicas: with the operator's test flag, a machine without
// KVM runs the vm tier under TCG, so the public-cloud example's untrusted
// tenants get the vm replicas the planner chose instead of a refusal, and
// rung verify proves each one, WEAK because emulated. Each boot takes a
// minute or more on a loaded machine: nothing here is timed.
func TestDemoRunsVMReplicas(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "runsc", "busybox", "qemu-system-x86_64", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, serr := os.Stat("/usr/sbin/" + bin); serr != nil {
				t.Skipf("%s not installed (make deps installs it): %v", bin, err)
			}
		}
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*"); len(k) == 0 {
		t.Skip("no guest kernel under /boot (make deps installs linux-image-amd64)")
	}
	// rung finds rung-vm (the guest init and QEMU jail) in PATH.
	bin := t.TempDir()
	if _, err := drivertest.BuildVMInit(bin); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	code, out, stderr := run(t, "demo", "--allow-emulated-vm", "--run", "public-cloud", "--data-dir", drivertest.SearchableTempDir(t))
	if code != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	t.Log(out)
	if !strings.Contains(out, "vm        available, EMULATED (TCG, --allow-emulated-vm): for tests only, NOT a security boundary") {
		t.Errorf("the demo does not say the vm tier is emulated:\n%s", out)
	}
	started := regexp.MustCompile(`(?m)^  \S+ +vm +started in`).FindAllString(out, -1)
	if len(started) == 0 {
		t.Errorf("no vm replica started:\n%s", out)
	}
	if regexp.MustCompile(`(?m)^  \S+ +vm +REFUSED`).MatchString(out) || strings.Contains(out, "FAIL") {
		t.Errorf("a vm replica was refused or failed verification:\n%s", out)
	}
	weak := regexp.MustCompile(`(?m)^\S+ +vm +vmm .*WEAK \(see below\)$`).FindAllString(out, -1)
	if len(weak) != len(started) || !strings.Contains(out, "the VM is emulated (TCG, --allow-emulated-vm)") {
		t.Errorf("%d vm replicas started, %d proven WEAK (emulated); want all:\n%s", len(started), len(weak), out)
	}
}
