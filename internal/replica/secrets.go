package replica

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// SecretMount asks for a tenant's Secret as files in the replica: one file
// per key, at MountPath.
type SecretMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
}

// maxSecretTmpfs bounds one secret's tmpfs (a Secret holds at most
// 256 KiB: v1.MaxSecretSize).
const maxSecretTmpfs = 512 << 10

// mountSecrets puts each secret of s (s.SecretData, fetched by the agent)
// on a tmpfs of its own at its mount path inside rootfs, before the
// replica starts: files of mode 0400 owned by the replica's user as the
// host sees it, read-only, nosuid, nodev, noexec. The values never touch
// a disk, and the runtime spec gains no host mount: the runtimes carry the
// root's submounts into the replica. A path through a symlink is refused.
func mountSecrets(rootfs string, s Spec, uid, gid uint32) error {
	if len(s.Secrets) == 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, m := range s.Secrets {
		data, ok := s.SecretData[m.Name]
		if !ok {
			return fmt.Errorf("%w: secret %s was not delivered to the node", ErrInvalid, m.Name)
		}
		rel := strings.TrimPrefix(path.Clean("/"+m.MountPath), "/")
		if rel == "" || rel != strings.TrimPrefix(m.MountPath, "/") {
			return fmt.Errorf("%w: secret %s: mount path %q is not a clean absolute path", ErrInvalid, m.Name, m.MountPath)
		}
		// os.Root refuses a path that leaves the root through a symlink;
		// a symlink inside it is refused too, so the mount lands exactly
		// at the path checked.
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return fmt.Errorf("secret %s: mount path %s: %w", m.Name, m.MountPath, err)
		}
		target := filepath.Join(real, rel)
		if resolved, err := filepath.EvalSymlinks(target); err != nil || resolved != target {
			return fmt.Errorf("%w: secret %s: mount path %s goes through a symlink in the image", ErrInvalid, m.Name, m.MountPath)
		}
		opts := fmt.Sprintf("size=%d,nr_inodes=%d,mode=0500,uid=%d,gid=%d", maxSecretTmpfs, 256, uid, gid)
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
		if err := unix.Mount("tmpfs", target, "tmpfs", flags, opts); err != nil {
			return fmt.Errorf("secret %s: tmpfs at %s: %w", m.Name, m.MountPath, err)
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range data {
				if !yield(k) {
					return
				}
			}
		}) {
			if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") {
				return fmt.Errorf("%w: secret %s: key %q is not a file name", ErrInvalid, m.Name, k)
			}
			f := filepath.Join(target, k)
			if err := os.WriteFile(f, []byte(data[k]), 0o400); err != nil {
				return fmt.Errorf("secret %s: %w", m.Name, err)
			}
			if err := os.Chown(f, int(uid), int(gid)); err != nil {
				return fmt.Errorf("secret %s: %w", m.Name, err)
			}
		}
		if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("secret %s: read-only: %w", m.Name, err)
		}
	}
	return nil
}

// unmountUnder detaches every mount at or below dir (a replica root's
// secrets), deepest first, so that its files can be removed.
func unmountUnder(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMount(fields[4])
		if p == real || strings.HasPrefix(p, real+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
