package replica_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/tenancy"
)

func nodeLogs(t *testing.T, n *replica.Node, id string, o logfile.ReadOptions) (string, error) {
	t.Helper()
	rc, err := n.Logs(t.Context(), id, o)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// A replica restarted (Remove, Start) keeps its last run's log as the
// previous one; Purge deletes both. Run on each tier.
func TestNodeLogsRemovePurge(t *testing.T) {
	n := node(t)
	for _, tier := range []tenancy.Tier{tenancy.Container, tenancy.Sandbox} {
		t.Run(tier.String(), func(t *testing.T) {
			if _, err := n.Driver(t.Context(), tier); err != nil {
				t.Skipf("tier unavailable: %v", err)
			}
			ctx := t.Context()
			id := "logs-" + tier.String()
			spec := func(word string) replica.Spec {
				return replica.Spec{ID: id, Tenant: "logs", Tier: tier, Image: "busybox:latest",
					Args: []string{"sh", "-c", "echo " + word + "; echo " + word + "-err >&2; sleep 60"}}
			}
			wait := func(want string) string {
				t.Helper()
				var s string
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if s, _ = nodeLogs(t, n, id, logfile.ReadOptions{}); strings.Contains(s, want) {
						return s
					}
				}
				t.Fatalf("log never showed %q: %q", want, s)
				return ""
			}
			if _, err := n.Logs(ctx, id, logfile.ReadOptions{}); !errors.Is(err, replica.ErrNotFound) {
				t.Fatalf("logs before start = %v, want ErrNotFound", err)
			}
			if err := n.Start(ctx, spec("first")); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = n.Purge(t.Context(), id) })
			wait("first-err")
			if s, _ := nodeLogs(t, n, id, logfile.ReadOptions{Timestamps: true, Tail: 1}); !strings.HasPrefix(s, time.Now().UTC().Format("2006-")) || strings.Count(s, "\n") != 1 {
				t.Errorf("tail 1 with timestamps = %q", s)
			}
			if err := n.Remove(ctx, id); err != nil { // a restart
				t.Fatal(err)
			}
			if err := n.Start(ctx, spec("second")); err != nil {
				t.Fatal(err)
			}
			s := wait("second-err")
			if strings.Contains(s, "first") {
				t.Errorf("current log holds the previous run: %q", s)
			}
			prev, err := nodeLogs(t, n, id, logfile.ReadOptions{Previous: true})
			if err != nil || !strings.Contains(prev, "first\n") || !strings.Contains(prev, "first-err\n") || strings.Contains(prev, "second") {
				t.Errorf("previous = %q, %v; want the first run's", prev, err)
			}
			if err := n.Purge(ctx, id); err != nil {
				t.Fatal(err)
			}
			for _, prev := range []bool{false, true} {
				if _, err := n.Logs(ctx, id, logfile.ReadOptions{Previous: prev}); !errors.Is(err, replica.ErrNotFound) {
					t.Errorf("logs (previous %v) after purge = %v, want ErrNotFound", prev, err)
				}
			}
		})
	}
}

// The roots of a data directory that was deleted without removing its
// replicas (a test's, a demo's) are swept by the next node opened on that
// filesystem; a live data directory's roots stay.
func TestRootsOfDeletedDataDirSwept(t *testing.T) {
	drivertest.RequireBinary(t, "runc")
	gone := node(t)
	kept := node(t)
	for _, n := range []*replica.Node{gone, kept} {
		if _, err := n.Prepare(t.Context(), replica.Spec{ID: "swept", Tenant: "sweep", Tier: tenancy.Container, Image: "busybox:latest", Args: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
	}
	rootOf := func(n *replica.Node) string {
		p, err := filepath.EvalSymlinks(filepath.Join(n.Dir(), "replicas", "swept", "rootfs"))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	goneRoot, keptRoot := rootOf(gone), rootOf(kept)
	t.Cleanup(func() { _ = kept.Remove(context.WithoutCancel(t.Context()), "swept") })
	if err := os.RemoveAll(gone.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(goneRoot); err != nil {
		t.Fatalf("the root went with the data directory already: %v", err)
	}
	node(t) // opening any node sweeps
	if _, err := os.Stat(goneRoot); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("root of the deleted data directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(keptRoot, "bin", "busybox")); err != nil {
		t.Errorf("root of the live data directory swept: %v", err)
	}
}
