package app_test

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/server/wire"
)

// TestRolloutResumesAfterKill: `rung up` is killed with SIGKILL in the
// middle of a rollout of real replicas; started again, it finishes the
// rollout where it stood (its state is stored with the placements), with
// each replica running once.
func TestRolloutResumesAfterKill(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	dir := filepath.Join(drivertest.SearchableTempDir(t), "data")
	var child *exec.Cmd
	kill := func() {
		_ = child.Process.Signal(syscall.SIGKILL)
		_, _ = child.Process.Wait()
	}
	t.Cleanup(func() {
		if child != nil && child.ProcessState == nil {
			kill()
		}
		cleanupContainers(dir)
	})
	start := func() *client.Client {
		var c *client.Client
		child, c = startCrashChild(t, dir, "RUNG_TEST_CRASH_AGENT=1")
		return c
	}
	ctx := t.Context()
	c := start()
	w := workloadObj("roll", 4)
	one := 1
	w.Spec.Env = map[string]string{"VERSION": "1"}
	w.Spec.Rollout.MaxUnavailable = &one
	for _, o := range []any{topologyObj(), tenantObj(), w} {
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitRollout := func(c *client.Client, what string, done func(wire.Rollout) bool) wire.Rollout {
		t.Helper()
		var ro wire.Rollout
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var err error
			if ro, err = c.Rollout(ctx, "acme", "roll"); err == nil && done(ro) {
				return ro
			}
		}
		t.Fatalf("rollout never %s: %+v", what, ro)
		return ro
	}
	first := waitRollout(c, "ran version 1", func(ro wire.Rollout) bool { return ro.Done })
	w.Spec.Env = map[string]string{"VERSION": "2"}
	if _, err := c.Apply(ctx, w); err != nil {
		t.Fatal(err)
	}
	mid := waitRollout(c, "started", func(ro wire.Rollout) bool {
		return ro.Template != first.Template && ro.Old > 0 && ro.Old < 4
	})
	kill()
	t.Logf("killed mid-rollout: %d of 4 replicas still on the old version", mid.Old)

	c = start()
	last := waitRollout(c, "finished after the restart", func(ro wire.Rollout) bool { return ro.Done && ro.Template == mid.Template })
	if len(last.History) != 1 || last.History[0].Template != first.Template {
		t.Errorf("history after the restart: %+v, want version 1 once", last.History)
	}
	rs, err := c.Replicas(ctx, "acme", "roll")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Template != mid.Template || !r.Ready {
			t.Errorf("replica %d after the resumed rollout: %+v", r.Index, r)
		}
	}
	waitContainers(t, dir, []string{"acme-roll-0", "acme-roll-1", "acme-roll-2", "acme-roll-3"})
}
