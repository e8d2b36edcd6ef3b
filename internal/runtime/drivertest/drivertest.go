// Package drivertest is the conformance suite of runtime.Driver: every
// driver (runc, runsc, fakes) must pass Run with the same expectations.
package drivertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"rung.dev/rung/internal/runtime"
)

// BundleFunc makes a bundle directory whose process runs script with a
// POSIX shell (busybox sh for the OCI drivers) and returns its path. id is
// the container ID it will be created under (for cgroup paths).
type BundleFunc func(t *testing.T, id, script string) string

// Run runs the conformance suite against d. Container IDs start with
// prefix, so that suites of several drivers sharing a host do not collide.
func Run(t *testing.T, d runtime.Driver, prefix string, mk BundleFunc) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, d, prefix+"-life", mk) })
	t.Run("ExitCodes", func(t *testing.T) { testExitCodes(t, d, prefix+"-exit", mk) })
	t.Run("SignalTrapped", func(t *testing.T) { testSignalTrapped(t, d, prefix+"-trap", mk) })
	t.Run("SeparateStreams", func(t *testing.T) { testStreams(t, d, prefix+"-io", mk) })
	t.Run("UnknownID", func(t *testing.T) { testUnknown(t, d, prefix+"-nope") })
	t.Run("InvalidID", func(t *testing.T) { testInvalid(t, d) })
	t.Run("DuplicateCreate", func(t *testing.T) { testDuplicate(t, d, prefix+"-dup", mk) })
	t.Run("ConcurrentCreate", func(t *testing.T) { testConcurrentCreate(t, d, prefix+"-race", mk) })
	t.Run("DeleteRunning", func(t *testing.T) { testDeleteRunning(t, d, prefix+"-delrun", mk) })
	t.Run("WaitCancelled", func(t *testing.T) { testWaitCancelled(t, d, prefix+"-cancel", mk) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func cleanup(t *testing.T, d runtime.Driver, id string) {
	t.Cleanup(func() { _ = d.Delete(context.WithoutCancel(t.Context()), id) })
}

// Started creates and starts container id from bundle dir with output to
// its log file, and deletes it when the test ends.
func Started(t *testing.T, d runtime.Driver, id, dir string) {
	t.Helper()
	ctx := t.Context()
	if err := d.Create(ctx, id, dir, runtime.IO{}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	cleanup(t, d, id)
	if err := d.Start(ctx, id); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

func testLifecycle(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	dir := mk(t, id, "echo hello; echo oops >&2; sleep 60")
	if err := d.Create(ctx, id, dir, runtime.IO{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	cleanup(t, d, id)
	st, err := d.State(ctx, id)
	if err != nil || st.Status != runtime.Created || st.ID != id || st.Pid <= 0 {
		t.Fatalf("state after create = %+v, %v; want created with a pid", st, err)
	}
	if err := d.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err = d.State(ctx, id)
	if err != nil || st.Status != runtime.Running {
		t.Fatalf("state after start = %+v, %v; want running", st, err)
	}
	// The output is in the log file.
	var logs string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		logs = readLogs(t, d, id)
		if strings.Contains(logs, "oops") {
			break
		}
	}
	// stdout and stderr are two pipes: their lines may interleave in
	// either order, as with the kubelet's logs.
	if logs != "hello\noops\n" && logs != "oops\nhello\n" {
		t.Errorf("logs = %q, want the lines %q and %q", logs, "hello", "oops")
	}
	if err := d.Kill(ctx, id, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	exit, err := d.Wait(ctx, id)
	if err != nil || exit.Code != 128+int(syscall.SIGKILL) {
		t.Fatalf("wait = %+v, %v; want code 137", exit, err)
	}
	// Wait again returns the same status.
	if again, err := d.Wait(ctx, id); err != nil || again.Code != exit.Code {
		t.Errorf("second wait = %+v, %v", again, err)
	}
	st, err = d.State(ctx, id)
	if err != nil || st.Status != runtime.Stopped {
		t.Errorf("state after exit = %+v, %v; want stopped", st, err)
	}
	if err := d.Kill(ctx, id, syscall.SIGKILL); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("kill stopped = %v, want ErrNotRunning", err)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := d.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("state after delete = %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("second delete = %v, want ErrNotFound", err)
	}
	if _, err := d.Logs(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("logs after delete = %v, want ErrNotFound", err)
	}
}

func readLogs(t *testing.T, d runtime.Driver, id string) string {
	t.Helper()
	rc, err := d.Logs(t.Context(), id)
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	return string(b)
}

func testExitCodes(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	for i, c := range []struct {
		script string
		code   int
	}{
		{"true", 0},
		{"exit 7", 7},
		{"exit 255", 255},
		{"sh -c 'kill -9 $$'; exit $?", 137},
		{"/nonexistent", 127},
	} {
		cid := id + "-" + string(rune('a'+i))
		t.Run(c.script, func(t *testing.T) {
			ctx := ctxT(t)
			exit, err := runtime.Run(ctx, d, cid, mk(t, cid, c.script), runtime.IO{Stdout: io.Discard, Stderr: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if exit.Code != c.code {
				t.Errorf("exit code = %d, want %d", exit.Code, c.code)
			}
			if _, err := d.State(ctx, cid); !errors.Is(err, runtime.ErrNotFound) {
				t.Errorf("Run left the container behind: %v", err)
			}
		})
	}
}

func testSignalTrapped(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	Started(t, d, id, mk(t, id, "trap 'exit 42' TERM; echo ready; while true; do sleep 1; done"))
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readLogs(t, d, id), "ready"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
	}
	if err := d.Kill(ctx, id, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exit, err := d.Wait(ctx, id)
	if err != nil || exit.Code != 42 {
		t.Fatalf("wait = %+v, %v; want 42 from the TERM trap", exit, err)
	}
}

func testStreams(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	var out, errb bytes.Buffer
	exit, err := runtime.Run(ctx, d, id, mk(t, id, "echo to-out; echo to-err >&2; exit 3"), runtime.IO{Stdout: &out, Stderr: &errb})
	if err != nil || exit.Code != 3 {
		t.Fatalf("run = %+v, %v", exit, err)
	}
	if out.String() != "to-out\n" || errb.String() != "to-err\n" {
		t.Errorf("stdout %q stderr %q, want %q and %q", out.String(), errb.String(), "to-out\n", "to-err\n")
	}
}

func testUnknown(t *testing.T, d runtime.Driver, id string) {
	ctx := ctxT(t)
	checks := map[string]error{}
	_, checks["state"] = d.State(ctx, id)
	checks["start"] = d.Start(ctx, id)
	checks["kill"] = d.Kill(ctx, id, syscall.SIGKILL)
	_, checks["wait"] = d.Wait(ctx, id)
	checks["delete"] = d.Delete(ctx, id)
	_, checks["logs"] = d.Logs(ctx, id)
	for op, err := range checks {
		if !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("%s unknown id = %v, want ErrNotFound", op, err)
		}
	}
}

func testInvalid(t *testing.T, d runtime.Driver) {
	ctx := ctxT(t)
	for _, id := range []string{"", "../etc", "a/b", "-flag", ".hidden", strings.Repeat("x", 200)} {
		if err := d.Create(ctx, id, t.TempDir(), runtime.IO{}); !errors.Is(err, runtime.ErrInvalidID) {
			t.Errorf("create %q = %v, want ErrInvalidID", id, err)
		}
		if _, err := d.State(ctx, id); !errors.Is(err, runtime.ErrInvalidID) {
			t.Errorf("state %q = %v, want ErrInvalidID", id, err)
		}
	}
}

func testDuplicate(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	dir := mk(t, id, "sleep 60")
	if err := d.Create(ctx, id, dir, runtime.IO{}); err != nil {
		t.Fatal(err)
	}
	cleanup(t, d, id)
	if err := d.Create(ctx, id, dir, runtime.IO{}); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("second create = %v, want ErrExists", err)
	}
	// The first container is untouched.
	if st, err := d.State(ctx, id); err != nil || st.Status != runtime.Created {
		t.Errorf("state = %+v, %v; want created", st, err)
	}
}

func testDeleteRunning(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	Started(t, d, id, mk(t, id, "sleep 60"))
	st, err := d.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, id); err != nil {
		t.Fatalf("delete running: %v", err)
	}
	if _, err := d.State(ctx, id); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("state after delete = %v, want ErrNotFound", err)
	}
	if st.Pid > 0 && syscall.Kill(st.Pid, 0) == nil {
		t.Errorf("pid %d still alive after delete", st.Pid)
	}
}

func testWaitCancelled(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	Started(t, d, id, mk(t, id, "sleep 60"))
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := d.Wait(wctx, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait with expired context = %v, want DeadlineExceeded", err)
	}
}

// testConcurrentCreate: of two simultaneous creates of one ID exactly one
// wins, and the loser's cleanup does not remove the winner.
func testConcurrentCreate(t *testing.T, d runtime.Driver, id string, mk BundleFunc) {
	ctx := ctxT(t)
	dir := mk(t, id, "sleep 60")
	cleanup(t, d, id)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- d.Create(ctx, id, dir, runtime.IO{}) }()
	}
	var ok, exists int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			ok++
		case errors.Is(err, runtime.ErrExists):
			exists++
		default:
			t.Errorf("create: %v", err)
		}
	}
	if ok != 1 || exists != 1 {
		t.Fatalf("%d creates succeeded, %d saw ErrExists; want 1 and 1", ok, exists)
	}
	if st, err := d.State(ctx, id); err != nil || st.Status != runtime.Created {
		t.Errorf("winner's state = %+v, %v; want created", st, err)
	}
}
