package microvm

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// devices are a replica's volume disks and network, as the node's
// attachers declared them in the bundle (bundle.VMDisks, bundle.VMNetOf),
// opened by the driver (root) and inherited by QEMU as descriptors: the
// jail binds no image and no /dev/net/tun, and QEMU's uid needs no access
// to either.
type devices struct {
	files   []*os.File // fds 4.. in the jail (3 is the gate)
	drives  []Drive
	tapFD   int
	volumes []channel.Volume
	idmap   *channel.IDMap
	net     *channel.Net
}

func (dv *devices) close() {
	for _, f := range dv.files {
		f.Close()
	}
	dv.files = nil
}

// openDevices opens what spec declares. The guest mounts each volume at
// its path; the path is made in rootfs (owned by the tenant's root) before
// the root disk is, since the guest's root is read-only.
func openDevices(spec *specs.Spec, rootfs string) (dv *devices, err error) {
	dv = &devices{}
	defer func() {
		if err != nil {
			dv.close()
		}
	}()
	disks, err := bundle.VMDisks(spec)
	if err != nil {
		return nil, err
	}
	vnet, err := bundle.VMNetOf(spec)
	if err != nil {
		return nil, err
	}
	if len(disks) > 0 {
		m := func(maps []specs.LinuxIDMapping) (uint32, uint32, bool) {
			for _, x := range maps {
				if x.ContainerID == 0 && x.HostID != 0 && x.Size > 0 {
					return x.HostID, x.Size, true
				}
			}
			return 0, 0, false
		}
		uid, usize, ok1 := m(spec.Linux.UIDMappings)
		gid, gsize, ok2 := m(spec.Linux.GIDMappings)
		if !ok1 || !ok2 || usize != gsize {
			return nil, fmt.Errorf("%w: volumes need the bundle's user namespace mapping (one range from 0, not to host root)", ErrInvalidConfig)
		}
		dv.idmap = &channel.IDMap{UID: uid, GID: gid, Size: usize}
		if err := mountPoints(rootfs, disks, uid, gid); err != nil {
			return nil, err
		}
	}
	for i, d := range disks {
		flag := os.O_RDWR
		if d.ReadOnly {
			flag = os.O_RDONLY
		}
		f, err := os.OpenFile(d.Image, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("volume disk for %s: %w", d.Path, err)
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("volume disk for %s: %s is not a regular file: %w", d.Path, d.Image, ErrInvalidConfig)
		}
		dv.files = append(dv.files, f)
		drive := Drive{FD: 3 + len(dv.files), ReadOnly: d.ReadOnly}
		if !d.ReadOnly {
			r, err := os.OpenFile(d.Image, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("volume disk for %s: %w", d.Path, err)
			}
			dv.files = append(dv.files, r)
			drive.ReadFD = 3 + len(dv.files)
		}
		dv.drives = append(dv.drives, drive)
		dv.volumes = append(dv.volumes, channel.Volume{Serial: VolumeSerial(i), Path: d.Path, ReadOnly: d.ReadOnly})
	}
	if vnet != nil {
		f, err := openTap(vnet.NetNS, vnet.Tap)
		if err != nil {
			return nil, err
		}
		dv.files = append(dv.files, f)
		dv.tapFD = 3 + len(dv.files)
		dv.net = &channel.Net{Addr: vnet.Addr.String() + "/32", Gateway: vnet.Gateway.String()}
	}
	return dv, nil
}

// mountPoints makes each volume's directory in rootfs (never following a
// symlink out of it: os.Root), owned by the tenant's root.
func mountPoints(rootfs string, disks []bundle.VMDisk, uid, gid uint32) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, d := range disks {
		rel := d.Path[1:]
		if fi, err := root.Lstat(rel); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("volume at %s: the image has a non-directory there: %w", d.Path, ErrInvalidConfig)
			}
			continue
		}
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return fmt.Errorf("volume at %s: make its mount point: %w", d.Path, err)
		}
		// The new directories are the tenant root's, as unpacked files are.
		for p := rel; p != "." && p != "/"; p = filepath.Dir(p) {
			_ = root.Lchown(p, int(uid), int(gid))
		}
	}
	return nil
}

// openTap opens tap device name in the network namespace at nsPath (empty:
// this process's own): TUNSETIFF attaches to an existing persistent tap of
// the opener's namespace. The descriptor is what QEMU reads and writes
// the guest's frames on.
func openTap(nsPath, name string) (*os.File, error) {
	open := func() (*os.File, error) {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		// IFF_TAP, no packet information; never IFF_MULTI_QUEUE (the
		// node made it single-queue).
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("attach to tap %s: %w", name, err)
		}
		return os.NewFile(uintptr(fd), "tap:"+name), nil
	}
	if nsPath == "" {
		return open()
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread ends with the goroutine (no UnlockOSThread): it never
		// runs other code in the node's namespace.
		goruntime.LockOSThread()
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: fmt.Errorf("node network namespace %s: %w", nsPath, err)}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: fmt.Errorf("enter %s: %w", nsPath, err)}
			return
		}
		f, err := open()
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// guestDevices are the devices' side of the guest's config.
type guestDevices struct {
	volumes []channel.Volume
	idmap   *channel.IDMap
	net     *channel.Net
}

func (g guestDevices) config(c channel.Config) channel.Config {
	c.Volumes, c.IDMap, c.Net = g.volumes, g.idmap, g.net
	return c
}
