package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/runtime/drivertest"
)

// TestSecretsInReplicas: a workload mounts its tenant's Secret; until the
// secret exists the replica waits with the reason; then each replica (a
// container and a gVisor sandbox) reads the value from a read-only tmpfs
// file of mode 0400 owned by its own user, the value appears in no get
// output, each read by the node is an audit event, and no mount is left
// once the replicas are gone.
func TestSecretsInReplicas(t *testing.T) {
	startUpWithAgent(t)
	drivertest.RequireBinary(t, "runsc")
	manifests := applyOnOneNode(t,
		sleeperDoc("shop", "app", "secrets: [{name: db, mountPath: /run/secrets/db}]"),
		sleeperDoc("shop", "boxed", "isolation: {minimum: sandbox}", "secrets: [{name: db, mountPath: /etc/db}]"))
	waitReplica(t, "shop/app/0", "secret db")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cr3t-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := rungCmd(t, "secret", "set", "shop/db", "--from-file", "password="+pw); code != ExitOK {
		t.Fatalf("secret set: exit %d %s %s", code, out, stderr)
	}
	waitReplica(t, "shop/app/0", "running")
	waitReplica(t, "shop/boxed/0", "running")
	for _, c := range []struct{ target, dir string }{{"shop/app", "/run/secrets/db"}, {"shop/boxed", "/etc/db"}} {
		code, out, stderr := rungCmd(t, "exec", c.target, "--", "cat", c.dir+"/password")
		if code != ExitOK || out != "s3cr3t-value" {
			t.Errorf("%s: cat the secret: exit %d %q %s", c.target, code, out, stderr)
		}
		code, out, _ = rungCmd(t, "exec", c.target, "--", "stat", "-c", "%a %u", c.dir+"/password")
		if code != ExitOK || strings.TrimSpace(out) != "400 65534" {
			t.Errorf("%s: the secret file is %q (exit %d), want mode 400 owned by the replica's user 65534", c.target, out, code)
		}
		if code, _, _ := rungCmd(t, "exec", c.target, "--", "sh", "-c", "echo x > "+c.dir+"/password"); code == ExitOK {
			t.Errorf("%s: the replica could write its secret", c.target)
		}
	}
	if code, out, _ := rungCmd(t, "exec", "shop/app", "--", "grep", "/run/secrets/db", "/proc/mounts"); code != ExitOK || !strings.Contains(out, "tmpfs") || !strings.Contains(out, "ro,") {
		t.Errorf("the secret's mount inside the replica: exit %d %q, want a read-only tmpfs", code, out)
	}
	for _, args := range [][]string{{"get", "workload", "shop/app", "-o", "yaml"}, {"describe", "workload", "shop/app"}, {"get", "events"}} {
		if _, out, _ := rungCmd(t, args...); strings.Contains(out, "s3cr3t-value") {
			t.Errorf("rung %s shows the secret's value", strings.Join(args, " "))
		}
	}
	if _, out, _ := rungCmd(t, "get", "events"); !strings.Contains(out, "secret.read") {
		t.Errorf("no secret.read event:\n%s", out)
	}
	if code, _, stderr := rungCmd(t, "secret", "delete", "shop/db"); code != ExitOK {
		t.Fatalf("secret delete: exit %d %s", code, stderr)
	}
	if code, _, stderr := rungCmd(t, "delete", "-f", manifests); code != ExitOK {
		t.Fatalf("delete: exit %d %s", code, stderr)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		if !strings.Contains(string(b), "/run/secrets/db") && !strings.Contains(string(b), "/etc/db ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secret mounts left after the replicas went:\n%s", b)
		}
	}
}
