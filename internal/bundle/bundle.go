// Package bundle builds the OCI runtime spec (config.json) of one replica,
// hardened as DESIGN §1 requires of the container and sandbox tiers, from
// small option functions in the style of containerd's pkg/oci.
//
// New starts from a hardened default, applies the options, recomputes the
// seccomp filter for the final capability set and then checks the result
// with Validate: an option can tighten the spec or describe the workload,
// never weaken an "always on" property. The package does no exec and no
// container I/O; Write and Read only touch config.json.
package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigName is the file name of the spec inside a bundle directory.
const ConfigName = "config.json"

// Defaults of the hardened spec, used when no option sets them.
const (
	// DefaultCPUMilli is the CPU limit in thousandths of a core.
	DefaultCPUMilli = 1000
	// DefaultMemoryBytes is the memory limit (and memory+swap limit).
	DefaultMemoryBytes = 256 << 20
	// DefaultPids is the PIDs limit.
	DefaultPids = 256
	// DefaultTmpBytes is the size of the writable tmpfs on /tmp.
	DefaultTmpBytes = 64 << 20
	// DefaultHostname is the hostname inside the replica's UTS namespace.
	DefaultHostname = "rung"
	// cpuPeriod is the CFS period in microseconds; the quota is scaled to it.
	cpuPeriod = 100000
)

var (
	// ErrNotHardened is returned by New and Validate when a spec lacks one
	// of the always-on protections.
	ErrNotHardened = errors.New("spec is not hardened")
	// ErrCapabilityNotAllowed is returned for a capability outside
	// AllowedCapabilities.
	ErrCapabilityNotAllowed = errors.New("capability not allowed")
	// ErrInvalidOption is returned for an option argument that is out of range
	// or malformed.
	ErrInvalidOption = errors.New("invalid option")
)

// Opt changes a spec being built. An Opt returns an error rather than
// produce a spec that Validate would reject.
type Opt func(*specs.Spec) error

// New returns the hardened spec of one replica: the defaults, then opts in
// order, then Docker's default seccomp profile for the resulting
// capabilities. The result always passes Validate; otherwise New fails.
// WithUserNamespace and WithProcess are required: there is no default
// tenant range or command.
func New(opts ...Opt) (*specs.Spec, error) {
	s := defaultSpec()
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, fmt.Errorf("build spec: %w", err)
		}
	}
	if err := WithDefaultSeccomp()(s); err != nil {
		return nil, fmt.Errorf("build spec: %w", err)
	}
	if err := Validate(s); err != nil {
		return nil, fmt.Errorf("build spec: %w", err)
	}
	return s, nil
}

// Write stores s as dir/config.json, readable by root only (0600). The file
// is replaced atomically. dir must exist.
func Write(dir string, s *specs.Spec) error {
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, ConfigName)); err != nil {
		return fmt.Errorf("write bundle %s: %w", dir, err)
	}
	return nil
}

// Read loads dir/config.json.
func Read(dir string) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read bundle %s: %w", dir, err)
	}
	return &s, nil
}

// defaultSpec is the hardened starting point of New, before the tenant's
// range, the command and the seccomp filter are filled in.
func defaultSpec() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			User:            specs.User{UID: 0, GID: 0},
			Env:             []string{defaultPath},
			Cwd:             "/",
			Capabilities:    capabilitySet(nil),
			Rlimits:         defaultRlimits(),
			NoNewPrivileges: true,
		},
		Hostname: DefaultHostname,
		Mounts:   defaultMounts(DefaultTmpBytes),
		Linux: &specs.Linux{
			Namespaces: defaultNamespaces(),
			Resources: &specs.LinuxResources{
				Devices: deviceRules(),
				CPU:     cpuLimit(DefaultCPUMilli),
				Memory:  memoryLimit(DefaultMemoryBytes),
				Pids:    &specs.LinuxPids{Limit: ptr(int64(DefaultPids))},
			},
			MaskedPaths:   defaultMaskedPaths(),
			ReadonlyPaths: defaultReadonlyPaths(),
		},
	}
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultMounts are the only mounts a replica gets: kernel filesystems and
// tmpfs, nothing from the host.
func defaultMounts(tmpBytes int64) []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		tmpMount(tmpBytes),
	}
}

func tmpMount(bytes int64) specs.Mount {
	return specs.Mount{
		Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
		Options: []string{"nosuid", "nodev", "mode=1777", fmt.Sprintf("size=%d", bytes)},
	}
}

// defaultNamespaces are the namespaces every replica gets, all new (no
// path: nothing is shared with the host or another replica). The network
// namespace starts with only a loopback interface.
func defaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.NetworkNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.CgroupNamespace},
		{Type: specs.UserNamespace},
	}
}

// requiredNamespaces are the namespaces Validate insists on (DESIGN §1).
func requiredNamespaces() []specs.LinuxNamespaceType {
	return []specs.LinuxNamespaceType{
		specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.MountNamespace, specs.UserNamespace,
	}
}

// defaultMaskedPaths hide host information and kernel interfaces under
// /proc and /sys (containerd's and Docker's list).
func defaultMaskedPaths() []string {
	return []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap",
		// Host details a tenant has no use for (issue 19): the kernel
		// command line, the block devices and partitions, swap devices,
		// loaded modules and the machine's DMI identity.
		"/proc/cmdline", "/proc/partitions", "/proc/diskstats", "/proc/swaps",
		"/proc/modules", "/sys/block", "/sys/class/block", "/sys/dev/block",
		"/sys/devices/virtual/block", "/sys/class/dmi", "/sys/devices/virtual/dmi",
	}
}

// defaultReadonlyPaths are kernel tunables a replica may read but not write.
func defaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// standardDevices are the character devices (major, minor) a replica may
// use: null, zero, full, random, urandom, tty, and the ptmx of its own
// devpts (136:*, minor -1 means any). The runtime creates the nodes; the device cgroup denies the rest.
func standardDevices() [][2]int64 {
	return [][2]int64{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {136, -1}}
}

func deviceRules() []specs.LinuxDeviceCgroup {
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range standardDevices() {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr(d[0]), Access: "rwm"}
		if d[1] >= 0 {
			r.Minor = ptr(d[1])
		}
		rules = append(rules, r)
	}
	return rules
}

func defaultRlimits() []specs.POSIXRlimit {
	return []specs.POSIXRlimit{
		{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
		{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024},
	}
}

func cpuLimit(milli int64) *specs.LinuxCPU {
	return &specs.LinuxCPU{Quota: ptr(milli * cpuPeriod / 1000), Period: ptr(uint64(cpuPeriod))}
}

// memoryLimit sets memory+swap equal to memory: no swap.
func memoryLimit(bytes int64) *specs.LinuxMemory {
	return &specs.LinuxMemory{Limit: ptr(bytes), Swap: ptr(bytes)}
}

func ptr[T any](v T) *T { return &v }
