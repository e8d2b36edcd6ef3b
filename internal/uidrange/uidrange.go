// Package uidrange assigns each tenant its own block of host user and group
// IDs for user namespaces, and shifts a root filesystem into such a block.
//
// Blocks are deterministic (tenant index → block), never overlap, and never
// contain host root or the low system IDs: block i starts at
// Base + i*Size, with Base = 1<<20 and Size = 65536.
package uidrange

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"syscall"
)

const (
	// Base is the first host ID handed to any tenant. It lies above the
	// system IDs, nobody (65534) and the usual /etc/subuid blocks
	// (100000–165535 and a few more), so no tenant ever maps onto them.
	Base uint32 = 1 << 20
	// Size is the number of IDs in one tenant's block: a full 16-bit ID
	// space, so images with users up to 65535 map without loss.
	Size uint32 = 1 << 16
	// MaxTenants is how many tenant blocks fit below the invalid ID
	// 2^32-1, keeping the last block for Probe.
	MaxTenants = int((math.MaxUint32-uint64(Base))/uint64(Size)) - 1
)

// ErrInvalid is returned for a range that maps host root, wraps around the
// 32-bit ID space, or is empty, and for a tenant index out of bounds.
var ErrInvalid = errors.New("invalid id range")

// ErrUnmapped is returned by Shift for a file whose owner has no ID inside
// the range.
var ErrUnmapped = errors.New("id outside range")

// Range is a contiguous block of host IDs: container ID n is host ID
// HostUID+n (and HostGID+n for groups), for n < Size.
type Range struct {
	HostUID uint32 `json:"hostUID"`
	HostGID uint32 `json:"hostGID"`
	Size    uint32 `json:"size"`
}

// ForTenant returns the block of tenant number index (0-based, stable for
// the tenant's lifetime, e.g. assigned by the store on creation).
func ForTenant(index int) (Range, error) {
	if index < 0 || index >= MaxTenants {
		return Range{}, fmt.Errorf("tenant index %d not in [0,%d): %w", index, MaxTenants, ErrInvalid)
	}
	base := Base + uint32(index)*Size
	return Range{HostUID: base, HostGID: base, Size: Size}, nil
}

// Probe returns the block reserved for runtime probes (Detect), right
// after the last tenant block: no tenant's files are ever owned by it.
func Probe() Range {
	base := Base + uint32(MaxTenants)*Size
	return Range{HostUID: base, HostGID: base, Size: Size}
}

// Validate reports whether r is usable: non-empty, above host root (and the
// system IDs below Base), and not wrapping past the invalid ID 2^32-1.
func (r Range) Validate() error {
	switch {
	case r.Size == 0:
		return fmt.Errorf("%v: empty: %w", r, ErrInvalid)
	case r.HostUID == 0 || r.HostGID == 0:
		return fmt.Errorf("%v: maps host root: %w", r, ErrInvalid)
	case r.HostUID < Base || r.HostGID < Base:
		return fmt.Errorf("%v: starts below %d (system ids): %w", r, Base, ErrInvalid)
	case uint64(r.HostUID)+uint64(r.Size) > math.MaxUint32 ||
		uint64(r.HostGID)+uint64(r.Size) > math.MaxUint32:
		return fmt.Errorf("%v: reaches the invalid id %d: %w", r, uint32(math.MaxUint32), ErrInvalid)
	}
	return nil
}

// Overlaps reports whether r and o share any host UID or host GID.
func (r Range) Overlaps(o Range) bool {
	return overlap(r.HostUID, o.HostUID, r.Size, o.Size) || overlap(r.HostGID, o.HostGID, r.Size, o.Size)
}

func overlap(a, b, asize, bsize uint32) bool {
	return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(asize)
}

// ContainsUID reports whether host UID id lies in r.
func (r Range) ContainsUID(id uint32) bool {
	return id >= r.HostUID && uint64(id) < uint64(r.HostUID)+uint64(r.Size)
}

// String formats r as "uid BASE+SIZE gid BASE+SIZE".
func (r Range) String() string {
	return fmt.Sprintf("uid %d+%d gid %d+%d", r.HostUID, r.Size, r.HostGID, r.Size)
}

// Shift re-owns every file under dir from container IDs to host IDs of r:
// a file owned by uid u, gid g becomes HostUID+u, HostGID+g. It walks through
// an os.Root, never follows symlinks (it changes the link itself, lchown) and
// never leaves dir. A file already owned inside r is left as it is, so Shift
// may be rerun after an interruption. An owner ID ≥ r.Size is an
// ErrUnmapped error naming the path.
func Shift(dir string, r Range) error {
	if err := r.Validate(); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("shift %s: %w", dir, err)
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("shift %s: %w", dir, err)
		}
		fi, err := root.Lstat(path)
		if err != nil {
			return fmt.Errorf("shift %s: %w", dir, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("shift %s/%s: no owner information", dir, path)
		}
		uid, gid, err := shiftIDs(r, st.Uid, st.Gid)
		if err != nil {
			return fmt.Errorf("shift %s/%s: %w", dir, path, err)
		}
		if uid == st.Uid && gid == st.Gid {
			return nil
		}
		mode := fi.Mode()
		if err := root.Lchown(path, int(uid), int(gid)); err != nil {
			return fmt.Errorf("shift %s: %w", dir, err)
		}
		// chown clears setuid/setgid bits on regular files; put back what was
		// there (an unpacker that strips them has already done so).
		if mode.IsRegular() && mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			if err := root.Chmod(path, mode); err != nil {
				return fmt.Errorf("shift %s: %w", dir, err)
			}
		}
		return nil
	})
}

// shiftIDs maps an owner pair into r. An owner already inside r is kept.
func shiftIDs(r Range, uid, gid uint32) (uint32, uint32, error) {
	inUID := uid >= r.HostUID && uint64(uid) < uint64(r.HostUID)+uint64(r.Size)
	inGID := gid >= r.HostGID && uint64(gid) < uint64(r.HostGID)+uint64(r.Size)
	if !inUID {
		if uid >= r.Size {
			return 0, 0, fmt.Errorf("uid %d: %w %v", uid, ErrUnmapped, r)
		}
		uid += r.HostUID
	}
	if !inGID {
		if gid >= r.Size {
			return 0, 0, fmt.Errorf("gid %d: %w %v", gid, ErrUnmapped, r)
		}
		gid += r.HostGID
	}
	return uid, gid, nil
}
