package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Sweeper wipes the node's volumes that the control plane deleted: the
// agent runs it on every reconcile, so a node learns of a deletion on its
// next one, not only when it restarts. Deletions are tombstones (a name
// and its uid), never "what the node should not have": a control plane
// that answers nothing wipes nothing.
type Sweeper struct {
	M *Manager
	// Deleted lists the deleted volumes (for this node).
	Deleted func(ctx context.Context) ([]Ref, error)
}

// Sweep wipes every deleted volume this node holds with that uid and no
// replica uses (one still used waits for the next sweep).
func (s Sweeper) Sweep(ctx context.Context) error {
	refs, err := s.Deleted(ctx)
	if err != nil {
		return fmt.Errorf("volume: deleted volumes: %w", err)
	}
	var errs []error
	for _, r := range refs {
		if r.check() != nil {
			continue
		}
		info, err := s.M.info(r)
		if errors.Is(err, os.ErrNotExist) || err == nil && r.UID != "" && info.Ref.UID != "" && info.Ref.UID != r.UID {
			continue // not here, or a newer volume of the name
		}
		if users, _ := os.ReadDir(s.M.usersDir(r)); len(users) > 0 {
			continue
		}
		if err := s.M.Delete(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// info reads r's metadata under the lock.
func (m *Manager) info(r Ref) (Info, error) {
	unlock := m.lock()
	defer unlock()
	return m.readInfo(r)
}
