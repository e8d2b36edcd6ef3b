// Package microvm is the vm tier: one QEMU machine per replica, with its
// own guest kernel. Driver (driver.go) implements runtime.Driver: it turns
// an OCI bundle into a read-only ext4 disk, boots the distribution's kernel
// with rung's initramfs (package guest) whose init (cmd/rung-vm, package
// vminit) runs the workload and speaks to the agent over a virtio-serial
// channel (package channel), and runs QEMU jailed (package jail): an
// unprivileged uid, its own namespaces, QEMU's seccomp sandbox, the
// replica's cgroup. Config builds QEMU's command line; QMP (qmp.go) talks
// to a running VMM.
//
// KVM is the boundary. Without it the tier is unavailable unless the
// operator allows emulation (TCG) for tests, which is never a security
// boundary and is reported as such everywhere.
package microvm

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"rung.dev/rung/internal/runtime/microvm/channel"
)

// ErrInvalidConfig is returned by Args for a config QEMU would reject or
// that would weaken the VM boundary.
var ErrInvalidConfig = errors.New("invalid microvm config")

// Config describes one VM.
type Config struct {
	// Binary is the VMM; default "qemu-system-x86_64".
	Binary string
	// Kernel is the guest kernel image (bzImage); required. Initrd is
	// optional.
	Kernel string
	Initrd string
	// Cmdline is appended to the base kernel command line
	// ("console=ttyS0 reboot=t panic=-1 quiet no_timer_check").
	Cmdline string
	// MemoryMiB and CPUs size the guest; defaults 256 and 1.
	MemoryMiB int
	CPUs      int
	// Disk is an optional raw root disk image, attached as virtio-blk
	// (/dev/vda); ReadOnlyDisk attaches it read-only.
	Disk         string
	ReadOnlyDisk bool
	// Channel, when set, is the unix socket QEMU listens on for the
	// virtio-serial port named channel.PortName (the agent's channel to
	// the guest's init).
	Channel string
	// QMPSocket is the unix socket QEMU listens on for QMP; required.
	QMPSocket string
	// ConsoleLog receives the guest's serial console (kernel messages);
	// required.
	ConsoleLog string
	// NoKVM uses the TCG emulator instead of KVM: for tests only, a guest
	// without KVM has no hardware boundary.
	NoKVM bool
	// Paused starts the VM stopped before the first instruction (-S), for
	// probes that only check the VMM.
	Paused bool
	// Volumes are more raw disks, each an open descriptor QEMU inherits
	// (never a path: the image stays root's, the jail holds no file of
	// it), attached as virtio-blk with serial volN (N its index).
	Volumes []Drive
	// TapFD, when > 0, is an open tap device QEMU inherits, attached as
	// virtio-net (the guest's eth0).
	TapFD int
}

// Drive is an inherited disk: FD opened read-write (read-only when
// ReadOnly), and ReadFD read-only, since QEMU dups the descriptor of the
// access mode it wants and probes a writable image read-only first.
type Drive struct {
	FD, ReadFD int
	ReadOnly   bool
}

// Defaults.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultMemoryMiB = 256
	DefaultCPUs      = 1
	// no_timer_check: the kernel's IO-APIC timer check panics a guest
	// whose vCPU the host did not run for a while (TCG on a loaded
	// machine: "IO-APIC + timer doesn't work!").
	baseCmdline = "console=ttyS0 reboot=t panic=-1 quiet no_timer_check"
	// tcgCacheMiB bounds TCG's translation cache (QEMU's default is 1 GiB
	// of address space that fills as code is translated): it is part of
	// the VMM's memory overhead under emulation.
	tcgCacheMiB = 64
)

// Args returns the QEMU command line (without the binary) for c: a q35
// machine with no default devices, firmware option ROMs or user config;
// virtio-pci devices only (disk, serial channel); the console on the
// first serial port, to a file; QMP on a unix socket; and QEMU's own
// seccomp sandbox that forbids the VMM to spawn processes, raise
// privileges, change its scheduling or use obsolete syscalls. (QEMU's
// "microvm" machine would boot faster on KVM, but the distribution kernel
// has virtio as modules, and under TCG it printed nothing: q35 is the one
// that is tested; see docs/vm.md.)
func (c Config) Args() ([]string, error) {
	if c.Kernel == "" {
		return nil, fmt.Errorf("no guest kernel: %w", ErrInvalidConfig)
	}
	if c.QMPSocket == "" || c.ConsoleLog == "" {
		return nil, fmt.Errorf("qmp socket and console log are required: %w", ErrInvalidConfig)
	}
	for _, p := range []string{c.Kernel, c.Initrd, c.Disk, c.QMPSocket, c.ConsoleLog, c.Channel} {
		if strings.Contains(p, ",") {
			// QEMU option values are comma-separated; a comma would inject
			// options.
			return nil, fmt.Errorf("path %q contains a comma: %w", p, ErrInvalidConfig)
		}
		if p != "" && !filepath.IsAbs(p) {
			return nil, fmt.Errorf("path %q not absolute: %w", p, ErrInvalidConfig)
		}
	}
	mem, cpus := c.MemoryMiB, c.CPUs
	if mem == 0 {
		mem = DefaultMemoryMiB
	}
	if cpus == 0 {
		cpus = DefaultCPUs
	}
	if mem < 64 || cpus < 1 || cpus > 255 {
		return nil, fmt.Errorf("memory %dMiB (at least 64), cpus %d (1 to 255): %w", mem, cpus, ErrInvalidConfig)
	}
	cmdline := baseCmdline
	if c.Cmdline != "" {
		cmdline += " " + c.Cmdline
	}
	args := []string{"-M", "q35"}
	if c.NoKVM {
		args = append(args, "-accel", "tcg,tb-size="+strconv.Itoa(tcgCacheMiB), "-cpu", "max")
	} else {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	}
	args = append(args,
		"-m", strconv.Itoa(mem)+"M",
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", c.Kernel,
		"-append", cmdline,
	)
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	args = append(args,
		"-chardev", "file,id=console,path="+c.ConsoleLog,
		"-serial", "chardev:console",
	)
	if c.Channel != "" {
		args = append(args,
			"-device", "virtio-serial-pci,id=vs",
			"-chardev", "socket,id=channel,path="+c.Channel+",server=on,wait=off",
			"-device", "virtserialport,bus=vs.0,chardev=channel,name="+channel.PortName,
		)
	}
	if c.Disk != "" {
		drive := "id=root,file=" + c.Disk + ",format=raw,if=none"
		if c.ReadOnlyDisk {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive=root")
	}
	// Volumes: an fd set each (QEMU dups the descriptor of the matching
	// access mode), a drive on it, a virtio-blk device named by serial.
	for i, v := range c.Volumes {
		if v.FD < 3 || (v.ReadFD != 0 && v.ReadFD < 3) {
			return nil, fmt.Errorf("volume %d: descriptors %d, %d: %w", i, v.FD, v.ReadFD, ErrInvalidConfig)
		}
		set := strconv.Itoa(i + 1)
		drive := "id=vol" + strconv.Itoa(i) + ",file=/dev/fdset/" + set + ",format=raw,if=none"
		if v.ReadOnly {
			drive += ",readonly=on"
		}
		args = append(args, "-add-fd", "fd="+strconv.Itoa(v.FD)+",set="+set)
		if v.ReadFD != 0 {
			args = append(args, "-add-fd", "fd="+strconv.Itoa(v.ReadFD)+",set="+set)
		}
		args = append(args,
			"-drive", drive,
			"-device", "virtio-blk-pci,drive=vol"+strconv.Itoa(i)+",serial="+VolumeSerial(i))
	}
	// The network: the node's tap device, opened by the driver in the
	// node's namespace (the jail's own namespace has no interfaces).
	if c.TapFD != 0 {
		if c.TapFD < 3 {
			return nil, fmt.Errorf("tap descriptor %d: %w", c.TapFD, ErrInvalidConfig)
		}
		args = append(args,
			"-netdev", "tap,id=n0,fd="+strconv.Itoa(c.TapFD),
			"-device", "virtio-net-pci,netdev=n0,romfile=")
	}
	args = append(args, "-qmp", "unix:"+c.QMPSocket+",server=on,wait=off")
	if c.Paused {
		args = append(args, "-S")
	}
	return args, nil
}

// VolumeSerial is the virtio-blk serial of volume i (how the guest's
// init finds its disk).
func VolumeSerial(i int) string { return "vol" + strconv.Itoa(i) }

// binary returns the VMM executable name or path.
func (c Config) binary() string {
	if c.Binary == "" {
		return DefaultBinary
	}
	return c.Binary
}
