package volume

import (
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Disk is the room for volumes on a node: the file system of its volume
// directory (statfs), and what the volumes' images already hold of it.
type Disk struct {
	// Capacity and Free are the file system's size and the bytes an
	// unprivileged writer may still allocate (f_bavail).
	Capacity, Free int64
	// Held is the bytes the images allocate now. An image is sparse: it
	// claims the rest of its size only as the volume is written, so the
	// control plane counts each bound volume at its full size against
	// Free+Held.
	Held int64
}

// Disk measures the room for volumes in the manager's directory.
func (m *Manager) Disk() (Disk, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(m.dir, "images"), &st); err != nil {
		return Disk{}, fmt.Errorf("volume: statfs %s: %w", m.dir, err)
	}
	d := Disk{Capacity: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}
	imgs, err := filepath.Glob(filepath.Join(m.dir, "images", "*", "*.img"))
	if err != nil {
		return Disk{}, err
	}
	for _, img := range imgs {
		var s unix.Stat_t
		if err := unix.Lstat(img, &s); err != nil {
			continue // wiped meanwhile
		}
		if s.Mode&unix.S_IFMT == unix.S_IFREG {
			d.Held += min(s.Blocks*512, s.Size)
		}
	}
	return d, nil
}

// Disk measures the room for volumes of the sweeper's node.
func (s Sweeper) Disk() (Disk, error) { return s.M.Disk() }
