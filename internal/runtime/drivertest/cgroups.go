package drivertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/uidrange"
)

// RunCgroups checks, for the drivers that run real containers, that a
// container gets a cgroup of its own with its own limits: an empty
// leftover at its cgroup path, with other limits, is replaced, and one
// that still holds a process refuses the create (ErrCgroupInUse) and is
// left alone. runsc applies no limits to a cgroup it didn't create, so
// without this a leftover decides the replica's limits.
func RunCgroups(t *testing.T, d runtime.Driver, prefix string, r uidrange.Range) {
	mem := memoryHierarchy(t)
	t.Run("StaleCgroup", func(t *testing.T) {
		id := prefix + "-stale"
		leftover(t, mem, id)
		const want = 64 << 20
		b := BusyboxBundle(t, r, Shell("sleep 30"), Cgroups(id), bundle.WithResources(500, want, 64))
		Started(t, d, id, b)
		st, err := d.State(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		got := liveMemoryLimit(t, mem, st.Pid)
		if got != want {
			t.Errorf("live memory limit of %s (pid %d) is %d, want the spec's %d, not the leftover's 629145600", id, st.Pid, got, want)
		}
	})
	t.Run("StaleCgroupRunOnce", func(t *testing.T) {
		ro, ok := d.(interface {
			RunOnce(ctx context.Context, id, bundle string, stdio runtime.IO) (runtime.Exit, error)
		})
		if !ok {
			t.Skip("driver has no RunOnce")
		}
		id := prefix + "-stale-once"
		dir := leftover(t, mem, id)
		const want = 64 << 20
		b := BusyboxBundle(t, r, Shell("sleep 2"), Cgroups(id), bundle.WithResources(500, want, 64))
		done := make(chan error, 1)
		go func() { _, err := ro.RunOnce(t.Context(), id, b, runtime.IO{}); done <- err }()
		// The runtime sets the limits just after it makes the cgroup: wait
		// for the spec's, while the replica runs.
		var got string
		for got != strconv.Itoa(want) {
			select {
			case err := <-done:
				t.Fatalf("run ended (%v) with the cgroup's limit at %q, want the spec's %d (the leftover had 629145600)", err, got, want)
			case <-time.After(20 * time.Millisecond):
			}
			if b, err := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
				got = strings.TrimSpace(string(b))
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("BusyCgroup", func(t *testing.T) {
		id := prefix + "-busy"
		dir := filepath.Join(mem, "rung-test", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		squatter := exec.Command("sleep", "60")
		if err := squatter.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = squatter.Process.Kill()
			_ = squatter.Wait()
			_ = syscall.Rmdir(dir)
		})
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(squatter.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		b := BusyboxBundle(t, r, Shell("sleep 30"), Cgroups(id), bundle.WithResources(500, 64<<20, 64))
		err := d.Create(t.Context(), id, b, runtime.IO{})
		if err == nil {
			_ = d.Delete(t.Context(), id)
		}
		if !errors.Is(err, runtime.ErrCgroupInUse) {
			t.Fatalf("create into a cgroup with a process in it: %v, want ErrCgroupInUse", err)
		}
		if got := cgroupOf(t, squatter.Process.Pid, "memory"); got != "/rung-test/"+id {
			t.Errorf("the squatter moved to %q", got)
		}
	})
}

// leftover makes an empty cgroup at test container id's path with a
// 600 MiB memory limit, as a replica that died with its runtime leaves it.
func leftover(t *testing.T, mem, id string) string {
	t.Helper()
	dir := filepath.Join(mem, "rung-test", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(dir) })
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte("629145600"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// memoryHierarchy is cgroup v1's memory controller, or skips.
func memoryHierarchy(t *testing.T) string {
	t.Helper()
	mem := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(mem, "memory.limit_in_bytes")); err != nil {
		t.Skipf("no cgroup v1 memory controller at %s (these tests read v1 limits): %v", mem, err)
	}
	return mem
}

// cgroupOf is pid's cgroup path in the v1 hierarchy of controller.
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && (parts[1] == controller || strings.Contains(","+parts[1]+",", ","+controller+",")) {
			return parts[2]
		}
	}
	t.Fatalf("pid %d has no %s cgroup", pid, controller)
	return ""
}

func liveMemoryLimit(t *testing.T, mem string, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mem, cgroupOf(t, pid, "memory"), "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
