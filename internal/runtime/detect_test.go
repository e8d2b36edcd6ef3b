package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

func TestDetectReal(t *testing.T) {
	for _, c := range []struct {
		tier string
		bin  string
		new  func(runtime.Config) (*runtime.OCI, error)
	}{
		{"container", "runc", runtime.NewRunc},
		{"sandbox", "runsc", runtime.NewRunsc},
	} {
		t.Run(c.bin, func(t *testing.T) {
			drivertest.RequireRoot(t)
			drivertest.RequireBinary(t, c.bin)
			d, err := c.new(runtime.Config{Dir: filepath.Join(drivertest.SearchableTempDir(t), c.bin)})
			if err != nil {
				t.Fatal(err)
			}
			a := d.Detect(t.Context())
			t.Logf("%+v", a)
			if !a.Available || a.Tier != c.tier || a.Version == "" || a.Err() != nil {
				t.Fatalf("Detect = %+v, want %s available with a version", a, c.tier)
			}
			// Cached: the same answer without probing again.
			if b := d.Detect(t.Context()); b != a {
				t.Errorf("second Detect = %+v, want cached %+v", b, a)
			}
		})
	}
}

// TestDetectFailsClosed: a missing binary, or one that answers --version
// but cannot create a container, makes the tier unavailable with a reason,
// and every call fails with ErrUnavailable.
func TestDetectFailsClosed(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken-runsc")
	script := "#!/bin/sh\ncase \"$*\" in *--version*) echo 'runsc version 0.0~fake'; exit 0;; esac\necho 'boom: no sandbox' >&2\nexit 1\n"
	if err := os.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		bin    string
		reason string
	}{
		{"missing", filepath.Join(dir, "no-such-runsc"), "no such file"},
		{"probe fails", broken, "probe container"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := runtime.NewRunsc(runtime.Config{Binary: c.bin, Dir: filepath.Join(dir, c.name)})
			if err != nil {
				t.Fatal(err)
			}
			a := d.Detect(t.Context())
			if a.Available || !strings.Contains(a.Reason, c.reason) || !errors.Is(a.Err(), runtime.ErrUnavailable) {
				t.Fatalf("Detect = %+v, want unavailable because %q", a, c.reason)
			}
			t.Logf("reason: %s", a.Reason)
		})
	}
	d, err := runtime.NewRunc(runtime.Config{Binary: filepath.Join(dir, "no-such-runc"), Dir: filepath.Join(dir, "x")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Create(t.Context(), "a", dir, runtime.IO{}); !errors.Is(err, runtime.ErrUnavailable) {
		t.Errorf("create with missing runc = %v, want ErrUnavailable", err)
	}
}

// TestCreateFailureCleansUp: a create that the runtime refuses (here: runsc
// with a pids limit too small for its own sentry and gofer threads) leaves
// no container, no log file and no cgroup behind, and says why.
func TestCreateFailureCleansUp(t *testing.T) {
	d := newRunsc(t, runtime.Config{})
	id := "tiny-pids"
	dir := drivertest.BusyboxBundle(t, drivertest.Range(t, 13), drivertest.Shell("true"), drivertest.Cgroups(id),
		bundle.WithResources(100, 64<<20, 4))
	err := d.Create(t.Context(), id, dir, runtime.IO{})
	if err == nil {
		_ = d.Delete(t.Context(), id)
		t.Fatal("create with pids.max 4 succeeded under runsc")
	}
	t.Logf("create: %v", err)
	if _, err := d.State(t.Context(), id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("state after failed create = %v, want ErrNotFound", err)
	}
	if _, err := d.Logs(t.Context(), id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("logs after failed create = %v, want ErrNotFound", err)
	}
	for _, ctrl := range []string{"pids", "memory", "cpu"} {
		p := filepath.Join("/sys/fs/cgroup", ctrl, "rung-test", id)
		if _, err := os.Stat(p); err == nil {
			t.Errorf("cgroup %s left behind", p)
		}
	}
}
