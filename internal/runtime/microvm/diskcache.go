package microvm

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The read-only root disk is made once per root content and tenant and
// shared by every replica booting that root: mkfs.ext4 -d of the tree
// is most of the time Create takes (issue 16), and the disk is attached
// read-only, so sharing it is safe. Per-replica writable state never goes
// on it. A disk is named by rootKey: the tree's content, owners, modes and
// xattrs, and the bundle's id mappings, so it is shared only by replicas
// of one tenant (the file is that tenant's uid, mode 0400) booting the
// same bytes.

// diskKeep is how many disks no replica uses stay cached.
const diskKeep = 8

// diskCacheVersion changes when the way a disk is made changes, so an
// older disk is never reused.
const diskCacheVersion = "rung-vm-root-disk-v1"

func (d *Driver) diskDir() string { return filepath.Join(d.opt.Dir, "disks") }

// rootDisk returns the shared read-only disk for rootfs, making it when
// no replica made it yet. The returned path is owned by the tenant's root
// the VMM's user (uid, gid: the replica's user as the host sees it), mode 0400.
func (d *Driver) rootDisk(ctx context.Context, rootfs string, linux *specs.Linux, uid, gid uint32) (string, error) {
	key, err := rootKey(rootfs, linux, uid, gid)
	if err != nil {
		return "", err
	}
	dir := d.diskDir()
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	path := filepath.Join(dir, "root-"+key+".img")
	if fi, err := os.Lstat(path); err == nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && ok && st.Uid == uid && st.Gid == gid && fi.Mode().Perm() == 0o400 {
			now := time.Now()
			_ = os.Chtimes(path, now, now) // most recently used
			return path, nil
		}
		_ = os.Remove(path) // not one this driver finished: make it again
	}
	// Made under a temporary name and renamed: a replica never sees a
	// half-made disk, and two Creates of one root at once both succeed.
	tmp, err := os.MkdirTemp(dir, "make-")
	if err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o711); err != nil { // mkfs runs as the tenant's root
		return "", fmt.Errorf("vm disk: %w", err)
	}
	out := filepath.Join(tmp, "disk.img")
	if err := makeDisk(ctx, rootfs, out, linux, d.opt.MaxDiskMiB); err != nil {
		return "", err
	}
	if err := os.Chown(out, int(uid), int(gid)); err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	if err := os.Chmod(out, 0o400); err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	if err := os.Rename(out, path); err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	return path, nil
}

// pruneDisks removes the cached disks beyond the diskKeep most recently
// used that no replica of this driver uses.
func (d *Driver) pruneDisks() {
	used := map[string]bool{}
	if ents, err := os.ReadDir(filepath.Join(d.opt.Dir, "vms")); err == nil {
		for _, e := range ents {
			if rec, err := d.readRecord(e.Name()); err == nil && rec.Disk != "" {
				used[filepath.Base(rec.Disk)] = true
			}
		}
	}
	d.mu.Lock()
	for _, v := range d.vms {
		if v.disk != "" {
			used[filepath.Base(v.disk)] = true
		}
	}
	d.mu.Unlock()
	ents, err := os.ReadDir(d.diskDir())
	if err != nil {
		return
	}
	type disk struct {
		name string
		mod  time.Time
	}
	var idle []disk
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "root-") || used[e.Name()] {
			continue
		}
		if fi, err := e.Info(); err == nil {
			idle = append(idle, disk{e.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(idle, func(a, b disk) int { return b.mod.Compare(a.mod) })
	for i, k := range idle {
		if i >= diskKeep {
			_ = os.Remove(filepath.Join(d.diskDir(), k.name))
		}
	}
}

// rootKey hashes what the disk of rootfs would hold: every entry's path,
// type, mode, owners, size, xattrs, link target or content, and hard
// links, plus the bundle's id mappings (mkfs runs in that user namespace,
// so they decide the ids inside the image) and the disk's owner (the
// VMM's user). A mount inside the root is
// ErrMountInRoot, as for makeDisk.
func rootKey(rootfs string, linux *specs.Linux, uid, gid uint32) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00owner %d %d\n", diskCacheVersion, uid, gid)
	for _, m := range linux.UIDMappings {
		fmt.Fprintf(h, "u %d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	for _, m := range linux.GIDMappings {
		fmt.Fprintf(h, "g %d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	var rootDev uint64
	fi, err := os.Lstat(rootfs)
	if err != nil {
		return "", fmt.Errorf("vm disk: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		rootDev = st.Dev
	}
	links := map[uint64]string{} // inode → first path, for hard links
	err = filepath.WalkDir(rootfs, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		rel, _ := filepath.Rel(rootfs, p)
		if st.Dev != rootDev {
			return fmt.Errorf("%w: /%s (secrets are not supported on the vm tier yet)", ErrMountInRoot, rel)
		}
		fmt.Fprintf(h, "%q %o %d %d %d\n", rel, st.Mode, st.Uid, st.Gid, st.Size)
		if err := hashXattrs(h, p); err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q\n", t)
		case fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0:
			fmt.Fprintf(h, "rdev %d\n", st.Rdev)
		case fi.Mode().IsRegular():
			if st.Nlink > 1 {
				if first, ok := links[st.Ino]; ok {
					fmt.Fprintf(h, "= %q\n", first)
					return nil
				}
				links[st.Ino] = rel
			}
			return hashFile(h, p, st)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrMountInRoot) {
			return "", err
		}
		return "", fmt.Errorf("vm disk: read the root: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashFile adds a regular file's bytes, opened without following a link
// and checked to be the entry the walk saw.
func hashFile(h hash.Hash, p string, want *syscall.Stat_t) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Ino != want.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while read", p)
	}
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	return nil
}

// hashXattrs adds an entry's extended attributes (file capabilities, say:
// mkfs -d copies them).
func hashXattrs(h hash.Hash, p string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) || n == 0 {
		return nil
	}
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if err != nil {
		return fmt.Errorf("xattrs of %s: %w", p, err)
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	slices.Sort(names)
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return fmt.Errorf("xattr %s of %s: %w", name, p, err)
		}
		fmt.Fprintf(h, "x %q %x\n", name, v[:m])
	}
	return nil
}
