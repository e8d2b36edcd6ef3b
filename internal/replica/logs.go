package replica

import (
	"context"
	"errors"
	"fmt"
	"io"

	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/runtime"
)

// Logs returns replica id's output as it wrote it, chosen by o: the
// running (or last) run's log, with o.Previous the run's before, which
// Remove keeps and Purge deletes. o.Follow follows the current log until
// ctx ends or the replica's log is removed or retired by Remove.
// ErrNotFound when this node has no such log.
func (n *Node) Logs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	drivers := n.drivers
	if rec, err := n.record(id); err == nil {
		d, err := n.driverFor(rec.Spec.Tier)
		if err != nil {
			return nil, err
		}
		drivers = []tierDriver{d}
	}
	for _, d := range drivers {
		if !d.HasLogs(id) && len(drivers) > 1 {
			continue
		}
		rc, err := d.ReadLogs(ctx, id, o)
		if errors.Is(err, runtime.ErrNotFound) {
			break
		}
		return rc, err
	}
	which := "log"
	if o.Previous {
		which = "previous run's log"
	}
	return nil, fmt.Errorf("%w: %s has no %s on this node", ErrNotFound, id, which)
}

// Purge removes replica id for good: Remove, then its logs, the previous
// run's too.
func (n *Node) Purge(ctx context.Context, id string) error {
	if err := n.Remove(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	for _, d := range n.drivers {
		if err := d.PurgeLogs(ctx, id); err != nil {
			return err
		}
	}
	return nil
}
