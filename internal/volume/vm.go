package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/replica"
)

// ErrInUse: a volume a vm-tier replica needs is used by another replica
// on this node, or one a vm-tier replica holds is wanted by another. Two
// kernels (the host's and a guest's, or two guests') writing one ext4
// file system corrupt it, so a vm replica's volume is its alone.
var ErrInUse = errors.New("volume in use")

// vmUser is what a vm replica's user file holds (a container's is empty).
var vmUser = []byte("vm")

// attachVM gives a vm-tier replica its volumes as disks: the image file
// itself, never mounted on the host (the guest's kernel mounts it), handed
// to the vm driver (bundle.WithVMDisk), which opens it for QEMU. The raw
// image rather than its loop device: no loop device to leak or share, no
// second page cache, and the size limit is the file's, so the guest gets
// ENOSPC at the volume's size as the host would.
func (a *Attacher) attachVM(ctx context.Context, at *replica.Attachment) error {
	s := at.Spec
	var done []Ref
	for _, v := range s.Volumes {
		if p := bundle.VolumePathProblem(v.MountPath); p != "" {
			a.release(s.ID, done)
			return fmt.Errorf("%w: volume %s at %q: %s", ErrInvalid, v.Name, v.MountPath, p)
		}
		r := Ref{Tenant: s.Tenant, Name: v.Name, UID: v.UID}
		img, err := a.m.vmImage(ctx, r, s.ID, v.Size, at.UID, at.GID)
		if err != nil {
			a.release(s.ID, done)
			return err
		}
		done = append(done, r)
		at.Opts = append(at.Opts, bundle.WithVMDisk(img, v.MountPath, v.ReadOnly))
	}
	return nil
}

// vmImage records that vm replica id uses r, alone, and returns r's image,
// created at size on first use with its root owned by uid:gid.
func (m *Manager) vmImage(ctx context.Context, r Ref, id string, size int64, uid, gid uint32) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
		return "", fmt.Errorf("%w: replica id %q", ErrInvalid, id)
	}
	unlock := m.lock()
	defer unlock()
	if _, err := m.ensure(ctx, r, size, uid, gid); err != nil {
		return "", err
	}
	d := m.usersDir(r)
	users, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	for _, u := range users {
		if u.Name() != id {
			return "", fmt.Errorf("%w: %s is used by replica %s on this node; a vm-tier replica's volume is a disk of its own guest, never shared (stop the other replica, or use perReplica volumes)", ErrInUse, r, u.Name())
		}
	}
	if mounted, err := isMountPoint(m.MountPoint(r)); err != nil || mounted {
		return "", fmt.Errorf("%w: %s is mounted on the host (%v): a vm-tier replica can't share it", ErrInUse, r, err)
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	// Marked before QEMU can write: the host checks the file system
	// before it mounts it again (checkGuestWritten).
	if err := os.WriteFile(m.guestWritten(r), nil, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(d, id), vmUser, 0o600); err != nil {
		return "", err
	}
	return m.image(r), nil
}

// heldByVM says which vm replica (other than id) holds r, if any. Called
// with the lock held.
func (m *Manager) heldByVM(r Ref, id string) (string, bool) {
	d := m.usersDir(r)
	users, _ := os.ReadDir(d)
	for _, u := range users {
		if u.Name() == id {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, u.Name())); err == nil && bytes.Equal(b, vmUser) {
			return u.Name(), true
		}
	}
	return "", false
}

func (m *Manager) guestWritten(r Ref) string {
	return filepath.Join(m.dir, "meta", r.Tenant, r.Name+".guest")
}

// checkGuestWritten runs e2fsck on an image a guest has written before
// the host's kernel mounts it: a guest's kernel is the tenant's to
// control and may have left any bytes there. A file system e2fsck can't
// repair unattended is refused (fail closed), not mounted. Called with
// the lock held.
func (m *Manager) checkGuestWritten(ctx context.Context, r Ref) error {
	if _, err := os.Stat(m.guestWritten(r)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-p", m.image(r)).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 1: // errors corrected
		m.log.Warn("volume: e2fsck repaired a guest-written volume", "volume", r.String(), "output", strings.TrimSpace(string(out)))
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("%w: e2fsck not found (install e2fsprogs): a volume a vm guest wrote is checked before the host mounts it", ErrUnsupported)
	default:
		return fmt.Errorf("%w: volume %s, written by a vm guest, fails e2fsck (%v): not mounted on the host: %s", ErrInvalid, r, err, strings.TrimSpace(string(out)))
	}
	return os.Remove(m.guestWritten(r))
}
