package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/uidrange"
)

// An Attacher gives replicas one kind of per-replica resource (a network,
// volumes, secrets…). Attachers plug into the node as containerd's plugins
// do: each kind lives in its own package and is listed once, in
// internal/plugins, never as a branch in the node or the agent.
//
// The node calls Attach while it prepares a replica, after the root is
// unpacked and before the runtime spec is made, and Detach when the replica
// is removed, also after a crash (an agent restart removes leftovers) and
// when a later step of Prepare fails, so nothing is left half-made.
type Attacher interface {
	// Name names the kind in errors and logs ("network", "volume").
	Name() string
	// Attach sets the resource up for a.Spec and adds what the runtime
	// spec needs to a.Opts. On error it leaves nothing behind.
	Attach(ctx context.Context, a *Attachment) error
	// Detach removes what Attach made for replica id. It is idempotent:
	// called for a replica that Attach never saw, it does nothing. spec is
	// nil when the replica's record could not be read.
	Detach(ctx context.Context, id string, spec *Spec) error
}

// A CreatedAttacher also acts between the runtime's create and start, when
// the replica's namespaces exist but its process has not run yet (a veth
// moved into the replica's network namespace, say). pid is the replica's
// init process as the host sees it.
type CreatedAttacher interface {
	Attacher
	Created(ctx context.Context, s Spec, pid int) error
}

// Attachment is what an Attacher gets for one replica.
type Attachment struct {
	Spec Spec
	// Rootfs is the host path of the replica's unpacked root.
	Rootfs string
	// Range is the tenant's host UID/GID range; UID and GID are the
	// replica's process user as the host sees it.
	Range    uidrange.Range
	UID, GID uint32
	// Opts are added to the replica's runtime spec (mounts, namespace
	// paths, annotations…). Admission checks the final spec, so an
	// attacher can't weaken it unnoticed.
	Opts []bundle.Opt
}

// Attacher returns the node's attacher of kind name (nil if none), for
// the agent to drive it (the network's peers, say).
func (n *Node) Attacher(name string) Attacher {
	for _, at := range n.attachers {
		if at.Name() == name {
			return at
		}
	}
	return nil
}

// ErrAttach wraps every attacher failure, named by its kind.
var ErrAttach = errors.New("attach")

// attach runs every attacher for a; when one fails, the ones before it are
// detached again.
func (n *Node) attach(ctx context.Context, a *Attachment) error {
	for i, at := range n.attachers {
		if err := at.Attach(ctx, a); err != nil {
			for _, done := range slices.Backward(n.attachers[:i]) {
				if derr := done.Detach(context.WithoutCancel(ctx), a.Spec.ID, &a.Spec); derr != nil {
					n.log.Warn("detach after a failed attach", "replica", a.Spec.ID, "kind", done.Name(), "err", derr)
				}
			}
			return fmt.Errorf("%w: %s: %w", ErrAttach, at.Name(), err)
		}
	}
	return nil
}

// detach runs every attacher's Detach, last attached first, and joins the
// errors: one failing never keeps the others from cleaning up.
func (n *Node) detach(ctx context.Context, id string, spec *Spec) error {
	var errs []error
	for _, at := range slices.Backward(n.attachers) {
		if err := at.Detach(ctx, id, spec); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s: %w", ErrAttach, at.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// created runs the CreatedAttachers between the runtime's create and start.
func (n *Node) created(ctx context.Context, s Spec, pid int) error {
	for _, at := range n.attachers {
		if c, ok := at.(CreatedAttacher); ok {
			if err := c.Created(ctx, s, pid); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrAttach, at.Name(), err)
			}
		}
	}
	return nil
}

// secretsAttacher puts a replica's secrets on tmpfs mounts inside its root
// (secrets.go). It is built in: every node delivers secrets.
type secretsAttacher struct{}

func (secretsAttacher) Name() string { return "secrets" }

func (secretsAttacher) Attach(_ context.Context, a *Attachment) error {
	return mountSecrets(a.Rootfs, a.Spec, a.UID, a.GID)
}

// Detach has nothing to do: the secrets' mounts live inside the replica's
// root, which removeReplica unmounts and deletes.
func (secretsAttacher) Detach(context.Context, string, *Spec) error { return nil }
