// Package microvm is the vm tier: one QEMU "microvm" machine per replica,
// its own guest kernel behind the KVM boundary. It builds the QEMU command
// line from a Config, talks QMP (the QEMU Machine Protocol) to the running
// VMM, and detects whether this node can run the tier at all.
//
// What this package can prove on a machine without a bootable guest: the
// command line (unit tests, and against a real qemu binary when one is
// installed, paused before boot with -S), and the QMP client (against a
// fake QMP server over a unix socket, and against real QEMU when
// installed). What it cannot prove there: that a guest kernel boots, runs
// the replica and reports back. Detect therefore reports the tier
// unavailable unless a boot probe with a configured guest kernel printed
// its marker on the console (fail closed).
package microvm

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrInvalidConfig is returned by Args for a config QEMU would reject or
// that would weaken the VM boundary.
var ErrInvalidConfig = errors.New("invalid microvm config")

// Config describes one micro-VM.
type Config struct {
	// Binary is the VMM; default "qemu-system-x86_64".
	Binary string
	// Kernel is the guest kernel image (uncompressed vmlinux or bzImage);
	// required. Initrd is optional.
	Kernel string
	Initrd string
	// Cmdline is appended to the base kernel command line
	// ("console=hvc0 reboot=t panic=-1 quiet").
	Cmdline string
	// MemoryMiB and CPUs size the guest; defaults 256 and 1.
	MemoryMiB int
	CPUs      int
	// Disk is an optional raw root disk image, attached as virtio-blk
	// (/dev/vda); ReadOnlyDisk attaches it read-only.
	Disk         string
	ReadOnlyDisk bool
	// VsockCID, when non-zero, adds a vhost-vsock device with this guest
	// CID (≥ 3) for a guest agent.
	VsockCID uint32
	// QMPSocket is the unix socket QEMU listens on for QMP; required.
	QMPSocket string
	// ConsoleLog receives the guest's console (hvc0); required: it is the
	// replica's log file.
	ConsoleLog string
	// NoKVM uses the TCG emulator instead of KVM. Only for tests of the
	// command line: a replica without KVM has no hardware boundary.
	NoKVM bool
	// Paused starts the VM stopped before the first instruction (-S), for
	// probes that only check the VMM.
	Paused bool
}

// Defaults.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultMemoryMiB = 256
	DefaultCPUs      = 1
	baseCmdline      = "console=hvc0 reboot=t panic=-1 quiet"
)

// Args returns the QEMU command line (without the binary) for c. It
// follows QEMU's microvm documentation: no PC legacy devices, no firmware
// option ROMs, no default devices or user config, virtio-mmio devices only,
// a virtio console to a file, QMP on a unix socket, and QEMU's own seccomp
// sandbox that forbids the VMM to spawn processes, raise privileges or use
// obsolete syscalls.
func (c Config) Args() ([]string, error) {
	if c.Kernel == "" {
		return nil, fmt.Errorf("no guest kernel: %w", ErrInvalidConfig)
	}
	if c.QMPSocket == "" || c.ConsoleLog == "" {
		return nil, fmt.Errorf("qmp socket and console log are required: %w", ErrInvalidConfig)
	}
	for _, p := range []string{c.Kernel, c.Initrd, c.Disk, c.QMPSocket, c.ConsoleLog} {
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
	if mem < 16 || cpus < 1 || cpus > 255 {
		return nil, fmt.Errorf("memory %dMiB, cpus %d: %w", mem, cpus, ErrInvalidConfig)
	}
	if c.VsockCID != 0 && c.VsockCID < 3 {
		return nil, fmt.Errorf("vsock cid %d is reserved: %w", c.VsockCID, ErrInvalidConfig)
	}
	cmdline := baseCmdline
	if c.Disk != "" {
		cmdline += " root=/dev/vda"
		if c.ReadOnlyDisk {
			cmdline += " ro"
		}
	}
	if c.Cmdline != "" {
		cmdline += " " + c.Cmdline
	}

	args := []string{
		"-M", "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=off,rtc=off",
	}
	if c.NoKVM {
		args = append(args, "-accel", "tcg", "-cpu", "max")
	} else {
		args = append(args, "-enable-kvm", "-cpu", "host")
	}
	args = append(args,
		"-m", strconv.Itoa(mem)+"M",
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-kernel", c.Kernel,
		"-append", cmdline,
	)
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	args = append(args,
		"-chardev", "file,id=console,path="+c.ConsoleLog,
		"-device", "virtio-serial-device",
		"-device", "virtconsole,chardev=console",
		"-object", "rng-random,id=rng,filename=/dev/urandom",
		"-device", "virtio-rng-device,rng=rng",
	)
	if c.Disk != "" {
		drive := "id=root,file=" + c.Disk + ",format=raw,if=none,cache=none,aio=threads"
		if c.ReadOnlyDisk {
			drive += ",readonly=on"
		}
		args = append(args, "-drive", drive, "-device", "virtio-blk-device,drive=root")
	}
	if c.VsockCID != 0 {
		args = append(args, "-device", "vhost-vsock-device,guest-cid="+strconv.FormatUint(uint64(c.VsockCID), 10))
	}
	args = append(args, "-qmp", "unix:"+c.QMPSocket+",server=on,wait=off")
	if c.Paused {
		args = append(args, "-S")
	}
	return args, nil
}

// binary returns the VMM executable name or path.
func (c Config) binary() string {
	if c.Binary == "" {
		return DefaultBinary
	}
	return c.Binary
}
