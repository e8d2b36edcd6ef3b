package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// RunOnce runs a container to completion with the runtime's own `run`
// (create, start, wait and delete in one CLI call), which is how the raw
// runtime is used and what `rung run` needs: every extra CLI call costs
// 8 ms (runc) to 28 ms (runsc). The exit code is the container's; a
// container killed by a signal exits 128+signal, as with the raw runtime.
func (d *OCI) RunOnce(ctx context.Context, id, bundle string, stdio IO) (Exit, error) {
	if err := d.check(id); err != nil {
		return Exit{}, err
	}
	if err := d.harden(ctx); err != nil {
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, err)
	}
	d.mu.Lock()
	_, busy := d.procs[id]
	if busy || d.creating[id] {
		d.mu.Unlock()
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, ErrExists)
	}
	d.creating[id] = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.creating, id)
		d.mu.Unlock()
	}()
	if ok, err := d.exists(id); err != nil || ok {
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, errors.Join(err, ErrExists))
	}
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, err)
	}
	if err := freshCgroups(bundle); err != nil {
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, err)
	}
	runtimeLog := d.runtimeLogPath(id)
	_ = os.Remove(runtimeLog)
	defer os.Remove(runtimeLog)

	var cmd *exec.Cmd
	var bx *box
	if d.namespaced() {
		// Under the tenant's host identity, in a cgroup made here
		// (userns.go), as Create.
		b, derived, err := d.boxUp(id, bundle)
		if err != nil {
			return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, err)
		}
		bx = b
		runtimeLog = d.boxRuntimeLog(id)
		if cmd, err = d.boxCommand(nil, id, b, runtimeLog, "run", "--bundle", derived, d.rid(id)); err != nil {
			_ = d.closeBox(id, b)
			return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, err)
		}
	} else {
		cmd = exec.Command(d.bin, d.args(runtimeLog, "run", "--bundle", bundle, d.rid(id))...)
	}
	// exec makes a fresh pipe for each writer and copies it: the caller's
	// files never reach the runtime (see proc.output).
	cmd.Stdout, cmd.Stderr = hideFile(stdio.Stdout), hideFile(stdio.Stderr)
	cmd.WaitDelay = 5 * time.Second
	var startErr error
	if bx != nil {
		startErr = d.startInCgroup(cmd, bundle)
	} else {
		startErr = cmd.Start()
	}
	if startErr != nil {
		if bx != nil {
			_ = d.closeBox(id, bx)
		}
		return Exit{}, fmt.Errorf("%s run %s: %w", d.kind, id, startErr)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-done:
	case <-ctx.Done():
		// Kill the container, not just the CLI: its init would outlive it.
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, _ = d.execID(kctx, id, "kill", d.rid(id), "KILL")
		cancel()
		runErr = <-done
	}
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if ok, _ := d.exists(id); ok {
			_, _ = d.execID(dctx, id, "delete", "--force", d.rid(id))
		}
		if bx != nil {
			d.sweepOrphans()
			_ = d.closeBox(id, bx)
			return
		}
		removeCgroups(bundle)
	}
	defer cleanup()
	exit := Exit{At: time.Now()}
	var ee *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &ee) && ee.Exited():
		exit.Code = ee.ExitCode()
		if exit.Code > 128 && exit.Code <= 128+64 {
			exit.Signal = syscall.Signal(exit.Code - 128)
		}
		// The runtime itself failed before the container ran: say why.
		if msg := lastError(runtimeLog); msg != noLoggedError && !d.ran(runtimeLog) {
			return exit, fmt.Errorf("%s run %s: %s: %w", d.kind, id, msg, runErr)
		}
	default:
		return exit, fmt.Errorf("%s run %s: %w", d.kind, id, runErr)
	}
	if ctx.Err() != nil {
		return exit, ctx.Err()
	}
	return exit, nil
}

// ran reports whether the runtime log shows the container started, so a
// non-zero exit is the container's own and not a runtime failure.
func (d *OCI) ran(runtimeLog string) bool {
	return lastError(runtimeLog) == noLoggedError
}

// hideFile wraps w so that os/exec copies into it through a pipe instead
// of handing its descriptor to the child; nil discards.
func hideFile(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return struct{ io.Writer }{w}
}
