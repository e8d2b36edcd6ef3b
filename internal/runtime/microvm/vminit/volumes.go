package vminit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/runtime/microvm/channel"
)

// HoldArg is the argument that makes the init binary (not as PID 1) wait
// for its standard input to close: a process whose user namespace gives
// the volumes' idmapped mounts their mapping.
const HoldArg = "hold"

// Hold blocks until standard input closes.
func Hold() {
	b := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(b); err != nil {
			return
		}
	}
}

// mountVolumes mounts each volume disk in the workload's root: nosuid,
// nodev (read-only when asked), idmapped so that the files the host's ids
// own (what the container tier writes: the tenant's range) are the
// replica's own ids here, and the guest's writes land in that range. The
// volume's root becomes the workload user's, as on the other tiers.
func mountVolumes(c channel.Config) error {
	if len(c.Volumes) == 0 {
		return nil
	}
	if c.IDMap == nil || c.IDMap.Size == 0 {
		return errors.New("volumes without the replica's id range")
	}
	userns, stop, err := mappedUserns(*c.IDMap)
	if err != nil {
		return fmt.Errorf("volumes: id mapping: %w", err)
	}
	defer stop()
	root, err := unix.Open(newRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for i, v := range c.Volumes {
		if err := mountVolume(root, userns, i, v, c.UID, c.GID); err != nil {
			return fmt.Errorf("volume at %s: %w", v.Path, err)
		}
	}
	return nil
}

func mountVolume(root, userns, i int, v channel.Volume, uid, gid uint32) error {
	dev, err := diskBySerial(v.Serial, 30*time.Second)
	if err != nil {
		return err
	}
	stage := "/vol" + strconv.Itoa(i)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return err
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME)
	attrs := uint64(unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if v.ReadOnly {
		flags |= unix.MS_RDONLY
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.Mount(dev, stage, "ext4", flags, "errors=remount-ro"); err != nil {
		return fmt.Errorf("mount %s: %w", dev, err)
	}
	defer unix.Unmount(stage, unix.MNT_DETACH)
	tree, err := unix.OpenTree(unix.AT_FDCWD, stage, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: attrs, Userns_fd: uint64(userns)}); err != nil {
		return fmt.Errorf("idmap: %w", err)
	}
	// The mount point, resolved inside the workload's root (a symlink in
	// the image can't send it elsewhere).
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	rel := strings.TrimPrefix(v.Path, "/")
	target, err := unix.Openat2(root, rel, how)
	if err != nil {
		return fmt.Errorf("mount point: %w", err)
	}
	err = unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	unix.Close(target)
	if err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	if v.ReadOnly {
		return nil
	}
	top, err := unix.Openat2(root, rel, how)
	if err != nil {
		return err
	}
	defer unix.Close(top)
	if err := unix.Fchownat(top, "", int(uid), int(gid), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("own its root: %w", err)
	}
	return nil
}

// mappedUserns returns a user namespace whose ids m.UID.. (the host's,
// as the volume stores them) are the guest's 0..m.Size, held by a child
// until stop.
func mappedUserns(m channel.IDMap) (int, func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return -1, nil, err
	}
	defer r.Close()
	cmd := exec.Command("/init", HoldArg)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: int(m.UID), HostID: 0, Size: int(m.Size)}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: int(m.GID), HostID: 0, Size: int(m.Size)}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return -1, nil, err
	}
	stop := func() { w.Close(); _ = cmd.Wait() }
	fd, err := unix.Open(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "ns/user"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		stop()
		return -1, nil, err
	}
	return fd, func() { unix.Close(fd); stop() }, nil
}

// diskBySerial waits for the virtio-blk disk with serial s.
func diskBySerial(s string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			if err == nil && strings.TrimSpace(string(b)) == s {
				dev := "/dev/" + e.Name()
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no disk with serial %q after %v", s, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
