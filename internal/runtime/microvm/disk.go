package microvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrDiskTooLarge: the replica's root does not fit the largest disk the
// driver makes.
var ErrDiskTooLarge = errors.New("image too large for the vm disk")

// ErrMountInRoot: something is mounted inside the replica's root (the
// secrets' tmpfs, say). The disk is a copy of the root on the host's disk,
// so it would copy what must stay off disk: refused until the vm tier
// carries such files over its channel.
var ErrMountInRoot = errors.New("a mount inside the root can't go on the vm disk")

// makeDisk writes an ext4 image of rootfs to out, sized to its content.
// mkfs.ext4 -d copies the tree; it runs without privileges, as the
// tenant's root in a user namespace of the bundle's mapping, so it reads
// the tenant's files as their owners inside the image (uid 0, 1000…), not
// as the shifted host ids they have on disk, and can't read anything the
// tenant's root couldn't. ext4 rather than erofs or squashfs: its module
// is in every distribution kernel, and e2fsprogs makes it without root.
// The disk is attached read-only, so it has no journal.
func makeDisk(ctx context.Context, rootfs, out string, linux *specs.Linux, maxMiB int64) error {
	var bytesUsed, inodes int64
	var rootDev uint64
	if fi, err := os.Stat(rootfs); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			rootDev = st.Dev
		}
	}
	err := filepath.WalkDir(rootfs, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		fi, err := e.Info()
		if err != nil {
			return err
		}
		bytesUsed += (fi.Size() + 4095) / 4096 * 4096
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Dev != rootDev && e.IsDir() {
			rel, _ := filepath.Rel(rootfs, p)
			return fmt.Errorf("%w: /%s (secrets are not supported on the vm tier yet)", ErrMountInRoot, rel)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vm disk: size the root: %w", err)
	}
	// ext4's metadata (inode tables, bitmaps, directories) on top.
	size := bytesUsed + bytesUsed/4 + inodes*512 + 16<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	if size>>20 > maxMiB {
		return fmt.Errorf("%w: the root needs a %d MiB disk, the limit is %d MiB (raise the vm disk limit or slim the image)", ErrDiskTooLarge, size>>20, maxMiB)
	}
	rootUID, rootGID := hostID(0, linux.UIDMappings), hostID(0, linux.GIDMappings)
	if rootUID <= 0 || rootGID <= 0 {
		return errors.New("vm disk: the bundle maps no unprivileged host id to the tenant's root")
	}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("vm disk: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("vm disk: %w", err)
	}
	if err := f.Chown(rootUID, rootGID); err != nil {
		f.Close()
		return fmt.Errorf("vm disk: %w", err)
	}
	f.Close()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		for _, p := range []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"} {
			if _, serr := os.Stat(p); serr == nil {
				mkfs, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("vm disk: no mkfs.ext4 (apt-get install e2fsprogs): %w", err)
	}
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0",
		"-I", "256", "-N", fmt.Sprint(inodes+64), "-L", "rung-root", "-d", rootfs, out)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var uidMaps, gidMaps []syscall.SysProcIDMap
	for _, m := range linux.UIDMappings {
		uidMaps = append(uidMaps, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	for _, m := range linux.GIDMappings {
		gidMaps = append(gidMaps, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: uidMaps, GidMappings: gidMaps,
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("vm disk: mkfs.ext4 -d: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// hostID maps a container id through maps; -1 when unmapped.
func hostID(id uint32, maps []specs.LinuxIDMapping) int {
	for _, m := range maps {
		if id >= m.ContainerID && id < m.ContainerID+m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return -1
}
