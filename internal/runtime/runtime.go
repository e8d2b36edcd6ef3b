// Package runtime runs replicas: a small Driver interface over the OCI
// runtimes that wrap one replica each, runc for the container tier and
// runsc (gVisor) for the sandbox tier, both driven by exec'ing their CLIs
// with a private state directory. The vm tier lives in runtime/microvm.
//
// A driver never picks a weaker runtime than asked: a missing binary or a
// failed probe makes Detect report the tier unavailable, and every call of
// an unavailable driver fails with ErrUnavailable (fail closed).
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// Sentinel errors, wrapped with context by every driver call.
var (
	// ErrNotFound: no container with that ID in this driver.
	ErrNotFound = errors.New("container not found")
	// ErrExists: a container with that ID already exists.
	ErrExists = errors.New("container already exists")
	// ErrNotRunning: the call needs a running (or created) container.
	ErrNotRunning = errors.New("container not running")
	// ErrUnavailable: the runtime of this tier cannot run on this node.
	ErrUnavailable = errors.New("runtime unavailable")
	// ErrInvalidID: an ID that the runtimes would reject or that could
	// name a path.
	ErrInvalidID = errors.New("invalid container id")
	// ErrExitUnknown: the container stopped while no process of this
	// driver was its parent (e.g. before an agent restart), so its exit
	// status was lost.
	ErrExitUnknown = errors.New("exit status unknown")
	// ErrCgroupInUse is returned by Create when the bundle's cgroup
	// already exists with processes in it: the replica would share it,
	// and runsc would not even apply its limits to a cgroup it didn't make.
	ErrCgroupInUse = errors.New("cgroup already in use")
	// ErrHardening: runsc could not be asked which hardening flags it
	// takes (RunscHardeningFlags), so the driver won't create sandboxes
	// with it: without them it could run weaker.
	ErrHardening = fmt.Errorf("runsc hardening flags unknown: %w", ErrUnavailable)
)

// Driver runs OCI bundles as containers, one replica each. IDs are unique
// per driver; every method is safe for concurrent use.
type Driver interface {
	// Create sets up the container from the bundle directory (config.json
	// and rootfs) without running its process. Its standard output and
	// error go to stdio, or to the replica's log file (see Logs).
	Create(ctx context.Context, id, bundle string, stdio IO) error
	// Start runs the process of a created container.
	Start(ctx context.Context, id string) error
	// State reports the container's status and host PID.
	State(ctx context.Context, id string) (State, error)
	// Kill sends sig to the container's init process.
	Kill(ctx context.Context, id string, sig syscall.Signal) error
	// Wait blocks until the container's process exits and returns how.
	Wait(ctx context.Context, id string) (Exit, error)
	// Delete removes the container, killing it first if it still runs.
	// Its log stops being the current one (Logs: ErrNotFound); an OCI
	// driver keeps it as the previous run's (OCI.ReadLogs).
	Delete(ctx context.Context, id string) error
	// Logs opens the replica's log file: its standard output and error,
	// interleaved, when Create was given no writer for them.
	Logs(ctx context.Context, id string) (io.ReadCloser, error)
}

// IO says where a replica's standard output and standard error go. A nil
// writer means the replica's log. Any writer, an *os.File too, is fed
// through a fresh pipe by this process (the runtime never gets the
// caller's descriptor), so it only works while this process lives (use it
// for `rung run`, not for long-running replicas). Standard input is always
// /dev/null.
type IO struct {
	Stdout io.Writer
	Stderr io.Writer
}

// Status is the OCI lifecycle status of a container.
type Status string

// OCI statuses.
const (
	Creating Status = "creating"
	Created  Status = "created"
	Running  Status = "running"
	Stopped  Status = "stopped"
	Paused   Status = "paused"
)

// State is what the runtime reports about a container.
type State struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Pid is the host PID of the container's init process for runc, and of
	// the gVisor sandbox (sentry) process for runsc; 0 once stopped.
	Pid    int    `json:"pid"`
	Bundle string `json:"bundle"`
}

// Exit is how a container's process ended.
type Exit struct {
	// Code is the exit code, or 128+signal when killed by a signal (the
	// shell's convention, and what runsc reports).
	Code int `json:"code"`
	// Signal is the signal that killed the process, if known; runsc
	// reports only Code.
	Signal syscall.Signal `json:"signal,omitempty"`
	// At is when this process saw the exit.
	At time.Time `json:"at"`
}

// Availability is the outcome of probing one tier's runtime on this node.
type Availability struct {
	// Tier is the tier name ("container", "sandbox", "vm").
	Tier string `json:"tier"`
	// Available is true only when a real probe succeeded.
	Available bool `json:"available"`
	// Runtime is the binary that runs the tier, Version what it reported.
	Runtime string `json:"runtime,omitempty"`
	Version string `json:"version,omitempty"`
	// Reason says why the tier is unavailable, or what was proven.
	Reason string `json:"reason"`
}

// Err returns nil for an available tier, else ErrUnavailable with the
// reason.
func (a Availability) Err() error {
	if a.Available {
		return nil
	}
	return fmt.Errorf("%s tier: %s: %w", a.Tier, a.Reason, ErrUnavailable)
}

// Run creates, starts and waits for one container, then deletes it, even
// when ctx ends (the container is killed first). It is `rung run`.
func Run(ctx context.Context, d Driver, id, bundle string, stdio IO) (Exit, error) {
	if r, ok := d.(interface {
		RunOnce(ctx context.Context, id, bundle string, stdio IO) (Exit, error)
	}); ok {
		return r.RunOnce(ctx, id, bundle, stdio)
	}
	if err := d.Create(ctx, id, bundle, stdio); err != nil {
		return Exit{}, err
	}
	defer func() {
		// Clean up even when ctx is already cancelled.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = d.Delete(dctx, id)
	}()
	if err := d.Start(ctx, id); err != nil {
		return Exit{}, err
	}
	exit, err := d.Wait(ctx, id)
	if err != nil && ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = d.Kill(kctx, id, syscall.SIGKILL)
		if e, werr := d.Wait(kctx, id); werr == nil {
			exit = e
		}
	}
	return exit, err
}
