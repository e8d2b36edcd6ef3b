package replica

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The agent's notes about each replica's life (restarts, last exit, last
// error) outlive the agent: kept under DIR/status/ID.json, so an agent
// that restarts adopts its replicas with their history.

func (n *Node) statusPath(id string) (string, error) {
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("%w: id %q", ErrInvalid, id)
	}
	return filepath.Join(n.dir, "status", id+".json"), nil
}

// SaveStatus keeps data as replica id's status notes (replaced whole).
func (n *Node) SaveStatus(id string, data []byte) error {
	p, err := n.statusPath(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// LoadStatus returns replica id's status notes, ErrNotFound when none.
func (n *Node) LoadStatus(id string) ([]byte, error) {
	p, err := n.statusPath(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: no status of %s", ErrNotFound, id)
	}
	return b, err
}

// DeleteStatus forgets replica id's status notes.
func (n *Node) DeleteStatus(id string) error {
	p, err := n.statusPath(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
