// Package volume keeps tenants' volumes on a node (DESIGN §10): one ext4
// file system image per volume, attached to a loop device and mounted
// nosuid,nodev under the node's data directory, its root owned by the
// tenant's mapped user; replicas get it as a bind mount (attacher.go).
//
// Why an image per volume rather than XFS or ext4 project quotas: quotas
// need the node's data directory on a file system mounted with prjquota
// (an operator's mount option rung can't assume), and a project quota
// shares inodes, the journal and the directory tree with every other
// tenant. An image is its own file system: the kernel enforces its size
// as ENOSPC wherever the node's disk is, a tenant can't exhaust another's
// inodes, and deleting it wipes exactly its blocks. The cost is a loop
// device per mounted volume and blocks reserved as written (the image is
// sparse).
package volume

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/durable"

	"golang.org/x/sys/unix"
)

// Errors of the node's volumes.
var (
	// ErrInvalid is a volume reference that can't name a volume.
	ErrInvalid = errors.New("invalid volume")
	// ErrStale is a volume on the node that belongs to a deleted volume of
	// the same name: it is never handed to the new one.
	ErrStale = errors.New("stale volume")
	// ErrUnsupported is a tier or node that can't mount volumes.
	ErrUnsupported = errors.New("volumes unsupported")
)

// Ref names one volume on a node: its tenant, its name (a perReplica
// instance is "NAME-ORD") and the control plane's id of the volume, so
// that a volume deleted and created again under the same name never sees
// the old one's data.
type Ref struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	UID    string `json:"uid,omitempty"`
}

func (r Ref) String() string { return r.Tenant + "/" + r.Name }

func (r Ref) check() error {
	if !v1.IsDNSLabel(r.Tenant) || !v1.IsDNSLabel(r.Name) {
		return fmt.Errorf("%w: %q: tenant and name must be DNS labels", ErrInvalid, r.String())
	}
	for _, c := range r.UID {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') || len(r.UID) > 64 {
			return fmt.Errorf("%w: %s: uid %q", ErrInvalid, r, r.UID)
		}
	}
	return nil
}

// Info is what the node knows of one of its volumes.
type Info struct {
	Ref     Ref       `json:"ref"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	Mounted bool      `json:"mounted"`
}

// Manager keeps the volumes under one directory:
//
//	DIR/images/TENANT/NAME.img   the file system image (sparse)
//	DIR/meta/TENANT/NAME.json    its Info (written last when created)
//	DIR/mnt/TENANT/NAME          where it is mounted while in use
type Manager struct {
	dir string
	log *slog.Logger
	mu  sync.Mutex
}

// lock serializes changes to the volumes: in this process (mu) and with
// other processes or Managers of the same directory (an exclusive flock
// of DIR/lock), such as the agent's sweeper next to the node's attacher.
func (m *Manager) lock() (unlock func()) {
	m.mu.Lock()
	f, err := os.OpenFile(filepath.Join(m.dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		m.log.Warn("volume: lock file", "err", err) // the mutex still holds in this process
		return m.mu.Unlock
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return func() {
		f.Close() // releases the flock
		m.mu.Unlock()
	}
}

// Open opens (creating) the volume directory dir.
func Open(dir string, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The sandbox's gofer opens a volume from inside the replica's user
	// namespace: the path to the mount points must be searchable (not
	// readable) by others. Images and bookkeeping stay root's.
	for _, d := range []string{"", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o711); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"images", "meta", "users"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &Manager{dir: dir, log: log}, nil
}

func (m *Manager) image(r Ref) string { return filepath.Join(m.dir, "images", r.Tenant, r.Name+".img") }
func (m *Manager) meta(r Ref) string  { return filepath.Join(m.dir, "meta", r.Tenant, r.Name+".json") }

// MountPoint is where volume r is mounted on the host while in use.
func (m *Manager) MountPoint(r Ref) string { return filepath.Join(m.dir, "mnt", r.Tenant, r.Name) }

// Mount makes volume r ready: created at size (bytes) on its first use
// here, mounted, its root owned by uid:gid (a replica's user as the host
// sees it). It returns the host path of the volume's root. A volume that
// exists keeps its size and data.
func (m *Manager) Mount(ctx context.Context, r Ref, size int64, uid, gid uint32) (string, error) {
	if err := r.check(); err != nil {
		return "", err
	}
	unlock := m.lock()
	defer unlock()
	if _, err := m.ensure(ctx, r, size, uid, gid); err != nil {
		return "", err
	}
	mp := m.MountPoint(r)
	mounted, err := isMountPoint(mp)
	if err != nil {
		return "", err
	}
	if !mounted {
		if err := m.mount(ctx, r, mp); err != nil {
			return "", err
		}
	}
	// The root is the replica's user's; files inside keep their owners.
	if err := os.Chown(mp, int(uid), int(gid)); err != nil {
		return "", fmt.Errorf("volume %s: own its root: %w", r, err)
	}
	return mp, nil
}

func (m *Manager) readInfo(r Ref) (Info, error) {
	var info Info
	data, err := os.ReadFile(m.meta(r))
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("volume %s: metadata: %w", r, err)
	}
	return info, nil
}

// create makes the image: a sparse file of size bytes with an ext4 file
// system (no reserved blocks, so the tenant gets what it asked for).
// Its metadata is written last: an image without it is a creation cut
// short, made again.
// ensure makes r's image unless it exists, and refuses one left by a
// deleted volume of the same name. The caller holds m's lock.
func (m *Manager) ensure(ctx context.Context, r Ref, size int64, uid, gid uint32) (Info, error) {
	info, err := m.readInfo(r)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m.create(ctx, r, size, uid, gid)
	case err != nil:
		return Info{}, err
	case r.UID != "" && info.Ref.UID != "" && info.Ref.UID != r.UID:
		return Info{}, fmt.Errorf("%w: %s here belongs to a deleted volume of that name (uid %s, not %s); it is wiped when this node learns of the deletion",
			ErrStale, r, info.Ref.UID, r.UID)
	}
	return info, nil
}

func (m *Manager) create(ctx context.Context, r Ref, size int64, uid, gid uint32) (Info, error) {
	if size <= 0 {
		return Info{}, fmt.Errorf("%w: %s: size %d", ErrInvalid, r, size)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(m.dir, "images"), &st); err != nil {
		return Info{}, err
	}
	if free := int64(st.Bavail) * st.Bsize; size > free {
		return Info{}, fmt.Errorf("%w: volume %s of %d bytes is larger than the node's free space (%d bytes)", ErrInvalid, r, size, free)
	}
	img := m.image(r)
	if err := os.MkdirAll(filepath.Dir(img), 0o700); err != nil {
		return Info{}, err
	}
	_ = os.Remove(img) // a creation cut short
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return Info{}, err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(img)
		return Info{}, fmt.Errorf("volume %s: image: %w", r, err)
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-L", truncLabel(r.Name),
		"-E", fmt.Sprintf("root_owner=%d:%d,lazy_itable_init=1,lazy_journal_init=1,nodiscard", uid, gid), img)
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(img)
		if errors.Is(err, exec.ErrNotFound) {
			return Info{}, fmt.Errorf("%w: mkfs.ext4 not found (install e2fsprogs)", ErrUnsupported)
		}
		return Info{}, fmt.Errorf("volume %s: mkfs.ext4: %w: %s", r, err, strings.TrimSpace(string(out)))
	}
	info := Info{Ref: r, Size: size, Created: time.Now().UTC()}
	data, err := json.Marshal(info)
	if err != nil {
		return Info{}, err
	}
	if err := os.MkdirAll(filepath.Dir(m.meta(r)), 0o700); err != nil {
		return Info{}, err
	}
	if err := durable.Replace(m.meta(r), data); err != nil {
		_ = os.Remove(img)
		return Info{}, err
	}
	m.log.Info("volume created", "volume", r.String(), "uid", r.UID, "size", size)
	return info, nil
}

// mount attaches r's image to a loop device and mounts it at mp.
func (m *Manager) mount(ctx context.Context, r Ref, mp string) error {
	if err := os.MkdirAll(filepath.Dir(mp), 0o711); err != nil {
		return err
	}
	if err := os.Mkdir(mp, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := m.checkGuestWritten(ctx, r); err != nil { // vm.go
		return err
	}
	dev, f, err := attachLoop(ctx, m.image(r))
	if err != nil {
		return fmt.Errorf("volume %s: %w", r, err)
	}
	defer f.Close() // autoclear: the mount holds the device from here on
	err = unix.Mount(dev, mp, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "errors=remount-ro")
	if err != nil {
		return fmt.Errorf("volume %s: mount %s: %w", r, dev, err)
	}
	return nil
}

// Unmount unmounts r when mounted (its loop device goes with it).
func (m *Manager) Unmount(r Ref) error {
	if err := r.check(); err != nil {
		return err
	}
	unlock := m.lock()
	defer unlock()
	return m.unmount(r)
}

func (m *Manager) unmount(r Ref) error {
	mp := m.MountPoint(r)
	for {
		mounted, err := isMountPoint(mp)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(mp, 0); err != nil {
			if !errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("volume %s: unmount: %w", r, err)
			}
			// Still open somewhere (a sandbox's gofer exiting): detach it;
			// the kernel frees it, and its loop device, when closed.
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("volume %s: unmount: %w", r, err)
			}
		}
	}
}

// Delete unmounts volume r and wipes it: its blocks are deallocated
// (punched out of the image, which the node's file system then hands out
// zeroed) before the image is removed. With r.UID set, a volume of
// another uid (a newer one of the same name) is left alone.
func (m *Manager) Delete(ctx context.Context, r Ref) error {
	if err := r.check(); err != nil {
		return err
	}
	unlock := m.lock()
	defer unlock()
	info, err := m.readInfo(r)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat(m.image(r)); serr != nil {
			return nil // nothing here
		}
	case err != nil:
		return err
	case r.UID != "" && info.Ref.UID != "" && info.Ref.UID != r.UID:
		return nil
	}
	if err := m.unmount(r); err != nil {
		return err
	}
	if err := wipe(m.image(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("volume %s: wipe: %w", r, err)
	}
	_ = os.Remove(m.MountPoint(r))
	if err := os.Remove(m.meta(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_ = os.RemoveAll(m.usersDir(r))
	m.log.Info("volume deleted and wiped", "volume", r.String(), "uid", info.Ref.UID)
	return nil
}

// wipe deallocates every block of the image, syncs, and removes it.
func wipe(img string) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err == nil && st.Size() > 0 {
		err = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, st.Size())
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = zero(f, st.Size())
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Remove(img)
}

// zero overwrites f with zeros where holes can't be punched.
func zero(f *os.File, size int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}

// List returns the volumes on this node.
func (m *Manager) List() ([]Info, error) {
	unlock := m.lock()
	defer unlock()
	files, err := filepath.Glob(filepath.Join(m.dir, "meta", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, f := range files {
		r := Ref{Tenant: filepath.Base(filepath.Dir(f)), Name: strings.TrimSuffix(filepath.Base(f), ".json")}
		info, err := m.readInfo(r)
		if err != nil {
			return nil, err
		}
		info.Ref.Tenant, info.Ref.Name = r.Tenant, r.Name
		if info.Mounted, err = isMountPoint(m.MountPoint(r)); err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// UnmountAll unmounts every volume (a node shutting down, a test's
// cleanup); the data stays.
func (m *Manager) UnmountAll() error {
	infos, err := m.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, i := range infos {
		errs = append(errs, m.Unmount(i.Ref))
	}
	return errors.Join(errs...)
}

// isMountPoint reports whether p is a mount point in this mount
// namespace (/proc/self/mountinfo).
func isMountPoint(p string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && unescape(fields[4]) == p {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// truncLabel fits a name in ext4's 16-byte label.
func truncLabel(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
