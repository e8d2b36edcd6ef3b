package app_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/volume"
)

// TestVolumeLargerThanDisk runs rung up with its agent on runc: its node
// reports the volume directory's disk, and a volume larger than that is
// refused by the planner with the disk filter's reason and the fix (never
// bound, never made on the node), while a fitting one next to it binds and
// its replica runs and writes to it.
func TestVolumeLargerThanDisk(t *testing.T) {
	drivertest.RequireRoot(t)
	for _, bin := range []string{"runc", "busybox", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", bin, err)
		}
	}
	dir := filepath.Join(drivertest.SearchableTempDir(t), "data")
	child, c := startCrashChild(t, dir, "RUNG_TEST_CRASH_AGENT=1")
	vols, err := volume.Open(filepath.Join(dir, "volume"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if child.ProcessState == nil {
			_ = child.Process.Signal(syscall.SIGKILL)
			_, _ = child.Process.Wait()
		}
		removeNodeReplicas(t, dir, vols)
	})
	ctx := t.Context()
	if _, err := c.Apply(ctx, topologyObj()); err != nil {
		t.Fatal(err)
	}
	// The node's disk as its agent reports it.
	var free int64
	deadline := time.Now().Add(90 * time.Second)
	for free == 0 {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Nodes {
			if n.Name == "h1" && n.VolumeDisk != nil && n.VolumeDisk.Capacity > 0 {
				free = n.VolumeDisk.Free + n.VolumeDisk.Held
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node h1 reports no volume disk after 90s: %+v", nodes.Nodes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Larger than the disk (16Ti is the most a Volume may ask for).
	huge := volumeObj("big-data")
	huge.Spec.Size = qty("16Ti")
	if free >= huge.Spec.SizeBytes() {
		t.Skipf("the volume directory's file system has %d bytes free, more than 16Ti", free)
	}
	for _, o := range []any{tenantObj(), huge, volumeWorkload("big", v1.TierContainer), volumeObj("small-data"), volumeWorkload("small", v1.TierContainer)} {
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	// The fitting one binds and runs.
	waitLog(t, filepath.Join(vols.MountPoint(volume.Ref{Tenant: "acme", Name: "small-data"}), "log"), "run 0\n")
	res, err := c.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, u := range res.Unplaced {
		if u.Workload == "acme/big" {
			reasons = append(reasons, u.Reasons...)
		}
	}
	got := strings.Join(reasons, "\n")
	for _, want := range []string{
		"disk: removed 1 of 1 nodes",
		"volume big-data needs 16384Gi of disk, node h1 has",
		"fix: a smaller spec.size of Volume big-data",
		"smallest change: free",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("acme/big's reasons\n%s\nlack %q", got, want)
		}
	}
	for _, p := range res.Placements {
		if p.Workload == "acme/big" {
			t.Errorf("acme/big placed: %+v", p)
		}
	}
	// Never made on the node.
	if _, err := os.Stat(filepath.Join(dir, "volume", "images", "acme", "big-data.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the too-large volume's image: %v, want none", err)
	}
}

// removeNodeReplicas does the node's own removal of every replica under
// dir (the right driver for each: runsc's IDs carry a scope) and lets go
// of its volumes: the cleanup of a test whose rung up was killed.
func removeNodeReplicas(t *testing.T, dir string, vols *volume.Manager) {
	t.Helper()
	if node, err := replica.Open(context.Background(), dir, replica.Options{Attachers: []replica.Attacher{volume.NewAttacher(vols)}}); err == nil {
		recs, _ := node.Records()
		for _, r := range recs {
			if err := node.Remove(context.Background(), r.Spec.ID); err != nil {
				t.Errorf("cleanup %s: %v", r.Spec.ID, err)
			}
		}
	}
	cleanupContainers(dir)
	if err := vols.UnmountAll(); err != nil {
		t.Error(err)
	}
}
