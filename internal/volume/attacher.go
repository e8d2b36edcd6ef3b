package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/tenancy"
)

// Attacher gives replicas their volumes (replica.Attacher): each volume of
// the spec is mounted on the host (created on first use) and bind-mounted
// into the replica, nosuid and nodev; the sandbox tier reaches it through
// gVisor's gofer. A volume stays mounted on the host while a replica uses
// it (DIR/users/TENANT/NAME/REPLICA records which, across restarts).
type Attacher struct {
	m *Manager
}

// NewAttacher returns the attacher of m's volumes.
func NewAttacher(m *Manager) *Attacher { return &Attacher{m: m} }

// Manager is the attacher's volume manager.
func (a *Attacher) Manager() *Manager { return a.m }

// Name names the kind.
func (*Attacher) Name() string { return "volume" }

// Attach mounts the spec's volumes and adds their bind mounts.
func (a *Attacher) Attach(ctx context.Context, at *replica.Attachment) error {
	s := at.Spec
	if len(s.Volumes) == 0 {
		return nil
	}
	if s.Tier == tenancy.VM {
		return a.attachVM(ctx, at) // vm.go: each volume a virtio-blk disk
	}
	var done []Ref
	for _, v := range s.Volumes {
		if p := bundle.VolumePathProblem(v.MountPath); p != "" {
			a.release(s.ID, done)
			return fmt.Errorf("%w: volume %s at %q: %s", ErrInvalid, v.Name, v.MountPath, p)
		}
		r := Ref{Tenant: s.Tenant, Name: v.Name, UID: v.UID}
		if err := a.m.addUser(r, s.ID); err != nil {
			a.release(s.ID, done)
			return err
		}
		done = append(done, r)
		root, err := a.m.Mount(ctx, r, v.Size, at.UID, at.GID)
		if err != nil {
			a.release(s.ID, done)
			return err
		}
		at.Opts = append(at.Opts, bundle.WithVolume(root, v.MountPath, v.ReadOnly))
	}
	return nil
}

// Detach lets go of replica id's volumes; one nobody uses any more is
// unmounted (its data stays).
func (a *Attacher) Detach(_ context.Context, id string, spec *replica.Spec) error {
	refs, err := a.m.usedBy(id)
	if err != nil {
		return err
	}
	a.release(id, refs)
	return nil
}

func (a *Attacher) release(id string, refs []Ref) {
	for _, r := range refs {
		if err := a.m.removeUser(r, id); err != nil {
			a.m.log.Warn("volume: release", "volume", r.String(), "replica", id, "err", err)
		}
	}
}

func (m *Manager) usersDir(r Ref) string { return filepath.Join(m.dir, "users", r.Tenant, r.Name) }

// addUser records that replica id uses r.
func (m *Manager) addUser(r Ref, id string) error {
	if err := r.check(); err != nil {
		return err
	}
	if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
		return fmt.Errorf("%w: replica id %q", ErrInvalid, id)
	}
	unlock := m.lock()
	defer unlock()
	if vm, ok := m.heldByVM(r, id); ok { // vm.go
		return fmt.Errorf("%w: %s is the disk of vm replica %s on this node", ErrInUse, r, vm)
	}
	d := m.usersDir(r)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, id), nil, 0o600)
}

// removeUser forgets that id uses r and unmounts r when nobody does.
func (m *Manager) removeUser(r Ref, id string) error {
	unlock := m.lock()
	defer unlock()
	d := m.usersDir(r)
	if err := os.Remove(filepath.Join(d, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	left, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(left) > 0 {
		return nil
	}
	return m.unmount(r)
}

// usedBy lists the volumes replica id uses.
func (m *Manager) usedBy(id string) ([]Ref, error) {
	if id == "" || filepath.Base(id) != id {
		return nil, nil
	}
	files, err := filepath.Glob(filepath.Join(m.dir, "users", "*", "*", id))
	if err != nil {
		return nil, err
	}
	var out []Ref
	for _, f := range files {
		vol := filepath.Dir(f)
		out = append(out, Ref{Tenant: filepath.Base(filepath.Dir(vol)), Name: filepath.Base(vol)})
	}
	return out, nil
}
