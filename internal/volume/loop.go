package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Loop device flags (linux/loop.h).
const (
	loFlagsReadOnly  = 1
	loFlagsAutoclear = 4
	loFlagsDirectIO  = 16
)

// loopMajor is the block major of loop devices.
const loopMajor = 7

// attachLoop binds image to a free loop device with LOOP_CONFIGURE and
// returns the device path and an open descriptor of it. The device is
// autoclear: the kernel frees it when the last user (the mount, the
// descriptor) lets go, so a crash can never leak one past an unmount.
// Another process may take the device the kernel offered first; then the
// next free one is tried.
func attachLoop(ctx context.Context, image string) (string, *os.File, error) {
	img, err := os.OpenFile(image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open volume image: %w", err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("loop devices: get a free one: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		f, err := openLoop(dev, n)
		if err != nil {
			return "", nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd()), Info: unix.LoopInfo64{Flags: loFlagsAutoclear | loFlagsDirectIO}}
		copy(cfg.Info.File_name[:], image)
		err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) { // no direct I/O on this file system
			cfg.Info.Flags = loFlagsAutoclear
			err = unix.IoctlLoopConfigure(int(f.Fd()), &cfg)
		}
		if err == nil {
			return dev, f, nil
		}
		f.Close()
		if !errors.Is(err, unix.EBUSY) || attempt > 64 {
			return "", nil, fmt.Errorf("loop device %s: %w", dev, err)
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond) // taken meanwhile by another process
	}
}

// openLoop opens loop device n, making its node when /dev has none (a
// static /dev has only the first few).
func openLoop(dev string, n int) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(loopMajor, uint32(n)))); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("loop device %s: make its node: %w", dev, err)
		}
		f, err = os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("loop device: %w", err)
	}
	return f, nil
}
