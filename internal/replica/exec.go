package replica

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm"
)

// Exec runs args inside running replica id with the replica's own user,
// namespaces, seccomp filter and no_new_privs and no capabilities (inside
// gVisor for the sandbox tier): `rung exec` and health checks. It returns
// the exit code (runtime.ExitCodeNotFound for a missing program).
func (n *Node) Exec(ctx context.Context, id string, args []string, stdio runtime.ExecIO) (int, error) {
	rec, err := n.record(id)
	if err != nil {
		return -1, err
	}
	d, err := n.driverFor(rec.Spec.Tier)
	if err != nil {
		return -1, err
	}
	ex, ok := d.(execDriver)
	if !ok {
		return -1, fmt.Errorf("%w: exec in a %s replica", ErrUnavailable, rec.Spec.Tier)
	}
	spec, err := bundle.Read(n.replicaDir(id))
	if err != nil {
		return -1, err
	}
	return ex.ExecProcess(ctx, id, spec.Process, args, stdio)
}

// execDriver runs a process in a running replica (every driver here has
// it; the interface keeps the node's lookup small).
type execDriver interface {
	ExecProcess(ctx context.Context, id string, p *specs.Process, args []string, stdio runtime.ExecIO) (int, error)
}

var (
	_ execDriver = (*runtime.OCI)(nil)
	_ execDriver = (*microvm.Driver)(nil)
	_ tierDriver = (*runtime.OCI)(nil)
	_ tierDriver = (*microvm.Driver)(nil)
)

// Exit reports how replica id's process ended, once it has stopped
// (runtime.ErrExitUnknown when it stopped while no agent was its parent).
// It waits while the replica runs, until ctx ends.
func (n *Node) Exit(ctx context.Context, id string) (runtime.Exit, error) {
	rec, err := n.record(id)
	if err != nil {
		return runtime.Exit{}, err
	}
	d, err := n.driverFor(rec.Spec.Tier)
	if err != nil {
		return runtime.Exit{}, err
	}
	return d.Wait(ctx, id)
}

// Record returns what the node keeps about replica id.
func (n *Node) Record(id string) (Record, error) { return n.record(id) }
