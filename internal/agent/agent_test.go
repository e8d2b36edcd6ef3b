package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
)

// TestReconcileRealRunc is the end-to-end twin of the Plan table: a real
// node (runc, busybox image) reconciled through starts, a crash, an agent
// restart (adoption), a spec change, an orphan and a leftover bundle.
func TestReconcileRealRunc(t *testing.T) {
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	drivertest.RequireBinary(t, "busybox")
	ctx := t.Context()
	dir := drivertest.SearchableTempDir(t)
	node, err := replica.Open(ctx, dir, replica.Options{})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.BusyboxRoot(root); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Images().Pack(ctx, root, "busybox:latest", image.PackOptions{Healthcheck: image.BusyboxHealthcheck()}); err != nil {
		t.Fatal(err)
	}
	sleep := func(id string, args ...string) replica.Spec {
		return replica.Spec{ID: id, Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest", Args: append([]string{"sleep"}, args...)}
	}
	desired := []replica.Spec{sleep("acme-web-0", "300"), sleep("acme-web-1", "300")}
	src := agent.SourceFunc(func(context.Context) ([]replica.Spec, error) { return desired, nil })
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	a := agent.New(node, src, agent.Options{Now: now})
	t.Cleanup(func() {
		desired = nil
		_, _ = agent.New(node, src, agent.Options{}).Reconcile(context.Background())
	})

	kinds := func(r agent.Report) []string {
		var out []string
		for _, act := range r.Done {
			out = append(out, string(act.Kind)+" "+act.ID)
		}
		return out
	}
	reconcile := func(a *agent.Agent, want ...string) {
		t.Helper()
		r, err := a.Reconcile(ctx)
		if err != nil || len(r.Failed) > 0 {
			t.Fatalf("reconcile: %v %v", err, r.Failed)
		}
		if got := kinds(r); !slices.Equal(got, want) {
			t.Fatalf("reconcile did %v, want %v", got, want)
		}
	}
	running := func(id string) int {
		t.Helper()
		st, err := node.State(ctx, id)
		if err != nil || st.Status != runtime.Running {
			t.Fatalf("%s: state %+v err %v", id, st, err)
		}
		return st.Pid
	}

	reconcile(a, "start acme-web-0", "start acme-web-1")
	pid0 := running("acme-web-0")
	running("acme-web-1")

	// A crash of the workload: restarted, then held back by the back-off.
	if err := syscall.Kill(pid0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, node, "acme-web-0")
	reconcile(a, "restart acme-web-0", "adopt acme-web-1")
	pid0 = running("acme-web-0")
	if err := syscall.Kill(pid0, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, node, "acme-web-0")
	r, err := a.Reconcile(ctx)
	if err != nil || len(r.Deferred) != 1 || r.Deferred[0].ID != "acme-web-0" {
		t.Fatalf("second crash within the back-off: deferred %+v err %v", r.Deferred, err)
	}
	clock = clock.Add(3 * time.Second)
	reconcile(a, "restart acme-web-0", "adopt acme-web-1")

	// The agent restarts: a new Agent adopts what runs, starts nothing twice.
	pid1 := running("acme-web-1")
	b := agent.New(node, src, agent.Options{})
	reconcile(b, "adopt acme-web-0", "adopt acme-web-1")
	if running("acme-web-1") != pid1 {
		t.Error("adoption restarted the replica")
	}

	// A spec change replaces; an orphan (not desired) is removed; a bundle
	// left by a crash while preparing is cleaned up.
	desired = []replica.Spec{sleep("acme-web-0", "301")}
	if err := os.MkdirAll(filepath.Join(dir, "replicas", "acme-half-0", "rootfs"), 0o700); err != nil {
		t.Fatal(err)
	}
	reconcile(b, "remove acme-half-0", "remove acme-web-1", "replace acme-web-0")
	running("acme-web-0")
	if recs, _ := node.Records(); len(recs) != 1 {
		t.Errorf("records after reconcile: %+v", recs)
	}
	// Nothing leaked in the runtime either.
	out, err := exec.CommandContext(ctx, "runc", "--root", filepath.Join(dir, "runtimes", "runc", "state"), "list", "--format", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ ID string }
	_ = json.Unmarshal(out, &list)
	if len(list) != 1 || list[0].ID != "acme-web-0" {
		t.Errorf("runc containers: %s", out)
	}
}

func waitStopped(t *testing.T, node *replica.Node, id string) {
	t.Helper()
	for range 200 {
		st, err := node.State(t.Context(), id)
		if err == nil && st.Status == runtime.Stopped {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s did not stop", id)
}
