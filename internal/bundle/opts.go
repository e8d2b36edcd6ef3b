package bundle

import (
	"fmt"
	"path"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"

	"github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/uidrange"
)

// AllowedCapabilities is the allow-list of capabilities a replica may be
// granted (an "elevated" workload, DESIGN §4): the one capability that the
// Kubernetes Pod Security Standards "restricted" profile lets a pod add.
// CAP_NET_BIND_SERVICE binds ports below 1024 in the replica's own network
// namespace and grants nothing on the host.
func AllowedCapabilities() []string {
	return []string{"CAP_NET_BIND_SERVICE"}
}

// WithProcess sets the command, environment and working directory. env
// entries are KEY=VALUE and are added to the default PATH (a PATH in env
// replaces it); an empty cwd means "/".
func WithProcess(args, env []string, cwd string) Opt {
	return func(s *specs.Spec) error {
		if len(args) == 0 || args[0] == "" {
			return fmt.Errorf("process: empty command: %w", ErrInvalidOption)
		}
		if cwd == "" {
			cwd = "/"
		}
		if !path.IsAbs(cwd) {
			return fmt.Errorf("process: cwd %q not absolute: %w", cwd, ErrInvalidOption)
		}
		merged := []string{defaultPath}
		for _, kv := range env {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("process: env %q not KEY=VALUE: %w", kv, ErrInvalidOption)
			}
			merged = slices.DeleteFunc(merged, func(e string) bool { return strings.HasPrefix(e, k+"=") })
			merged = append(merged, kv)
		}
		s.Process.Args = slices.Clone(args)
		s.Process.Env = merged
		s.Process.Cwd = path.Clean(cwd)
		return nil
	}
}

// WithUser runs the process as uid:gid inside the replica's user namespace
// (the image's USER). Both must lie inside the mapped range.
func WithUser(uid, gid uint32, additionalGids ...uint32) Opt {
	return func(s *specs.Spec) error {
		s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: slices.Clone(additionalGids)}
		return nil
	}
}

// WithHostname sets the hostname of the replica's UTS namespace; it must be
// a DNS label.
func WithHostname(name string) Opt {
	return func(s *specs.Spec) error {
		if !v1.IsDNSLabel(name) {
			return fmt.Errorf("hostname %q is not a DNS label: %w", name, ErrInvalidOption)
		}
		s.Hostname = name
		return nil
	}
}

// WithUserNamespace maps container IDs 0..r.Size-1 to the tenant's host
// range r, in the replica's own user namespace. The rootfs must be owned by
// the range (see uidrange.Shift).
func WithUserNamespace(r uidrange.Range) Opt {
	return func(s *specs.Spec) error {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("user namespace: %w", err)
		}
		ensureNamespace(s, specs.UserNamespace)
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.HostUID, Size: r.Size}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: r.HostGID, Size: r.Size}}
		return nil
	}
}

// WithNamespaces gives the replica new PID, network (loopback only), IPC,
// UTS, mount, cgroup and user namespaces, replacing any namespace list,
// including one that joins an existing namespace by path.
func WithNamespaces() Opt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = defaultNamespaces()
		return nil
	}
}

// WithNoNewPrivileges sets no_new_privs: execve never grants privileges
// (setuid bits, file capabilities).
func WithNoNewPrivileges() Opt {
	return func(s *specs.Spec) error {
		s.Process.NoNewPrivileges = true
		return nil
	}
}

// WithReadonlyRootfs mounts the root filesystem read-only.
func WithReadonlyRootfs() Opt {
	return func(s *specs.Spec) error {
		s.Root.Readonly = true
		return nil
	}
}

// WithRootfs sets the root filesystem path, relative to the bundle
// directory or absolute. It stays read-only.
func WithRootfs(p string) Opt {
	return func(s *specs.Spec) error {
		if p == "" {
			return fmt.Errorf("rootfs: empty path: %w", ErrInvalidOption)
		}
		s.Root.Path = p
		return nil
	}
}

// WithTmpfsTmp sets the size in bytes of the writable tmpfs on /tmp, the
// replica's only writable filesystem besides /dev/shm.
func WithTmpfsTmp(size int64) Opt {
	return func(s *specs.Spec) error {
		if size <= 0 {
			return fmt.Errorf("tmpfs /tmp: size %d: %w", size, ErrInvalidOption)
		}
		s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/tmp" })
		s.Mounts = append(s.Mounts, tmpMount(size))
		return nil
	}
}

// WithMaskedPaths masks the default /proc and /sys paths plus extra ones
// (each becomes an empty, unreadable file or directory).
func WithMaskedPaths(extra ...string) Opt {
	return func(s *specs.Spec) error {
		s.Linux.MaskedPaths = mergePaths(s.Linux.MaskedPaths, defaultMaskedPaths(), extra)
		return nil
	}
}

// WithReadonlyPaths makes the default /proc paths plus extra ones read-only.
func WithReadonlyPaths(extra ...string) Opt {
	return func(s *specs.Spec) error {
		s.Linux.ReadonlyPaths = mergePaths(s.Linux.ReadonlyPaths, defaultReadonlyPaths(), extra)
		return nil
	}
}

// WithDefaultSeccomp sets Docker's default seccomp profile (minus the
// ptrace family) for the capabilities the spec holds now. New applies it
// last, so it always matches the final capability set.
func WithDefaultSeccomp() Opt {
	return func(s *specs.Spec) error {
		f, err := defaultSeccomp(s)
		if err != nil {
			return err
		}
		s.Linux.Seccomp = f
		return nil
	}
}

// WithNoCapabilities empties every capability set.
func WithNoCapabilities() Opt {
	return func(s *specs.Spec) error {
		s.Process.Capabilities = capabilitySet(nil)
		return nil
	}
}

// WithCapabilities grants exactly caps (names with or without the CAP_
// prefix, any case), each of which must be in AllowedCapabilities. They go
// into every set, ambient included, so a non-root user keeps them across
// execve.
func WithCapabilities(caps ...string) Opt {
	return func(s *specs.Spec) error {
		var set []string
		for _, c := range caps {
			name := strings.ToUpper(c)
			if !strings.HasPrefix(name, "CAP_") {
				name = "CAP_" + name
			}
			if !slices.Contains(AllowedCapabilities(), name) {
				return fmt.Errorf("capability %s (allowed: %s): %w",
					name, strings.Join(AllowedCapabilities(), ", "), ErrCapabilityNotAllowed)
			}
			if !slices.Contains(set, name) {
				set = append(set, name)
			}
		}
		s.Process.Capabilities = capabilitySet(set)
		return nil
	}
}

// WithResources sets the cgroup limits: CPU in thousandths of a core (CFS
// quota over a 100ms period), memory in bytes with memory+swap equal to it
// (no swap), and the number of PIDs.
func WithResources(cpuMilli, memBytes, pids int64) Opt {
	return func(s *specs.Spec) error {
		switch {
		case cpuMilli < 10:
			return fmt.Errorf("resources: cpu %dm below 10m: %w", cpuMilli, ErrInvalidOption)
		case memBytes < 4<<20:
			return fmt.Errorf("resources: memory %d below 4MiB: %w", memBytes, ErrInvalidOption)
		case pids < 1:
			return fmt.Errorf("resources: pids %d below 1: %w", pids, ErrInvalidOption)
		}
		r := s.Linux.Resources
		r.CPU = cpuLimit(cpuMilli)
		r.Memory = memoryLimit(memBytes)
		r.Pids = &specs.LinuxPids{Limit: ptr(pids)}
		return nil
	}
}

// WithBurst makes a replica burstable (DESIGN §12): its requests are
// guaranteed (CPU shares in proportion to cpuReq, memory soft limit —
// memory.low on cgroup v2 — at memReq) and it may use up to its limits
// (CFS quota at cpuLim, memory limit at memLim, no swap). It goes after
// WithResources, whose PIDs limit stays.
func WithBurst(cpuReq, cpuLim, memReq, memLim int64) Opt {
	return func(s *specs.Spec) error {
		switch {
		case cpuReq < 10 || cpuLim < cpuReq:
			return fmt.Errorf("resources: cpu limit %dm below the request %dm (or a request below 10m): %w", cpuLim, cpuReq, ErrInvalidOption)
		case memReq < 4<<20 || memLim < memReq:
			return fmt.Errorf("resources: memory limit %d below the request %d (or a request below 4MiB): %w", memLim, memReq, ErrInvalidOption)
		}
		r := s.Linux.Resources
		r.CPU = cpuLimit(cpuLim)
		r.CPU.Shares = ptr(uint64(max(2, cpuReq*1024/1000)))
		r.Memory = memoryLimit(memLim)
		r.Memory.Reservation = ptr(memReq)
		return nil
	}
}

// WithRlimits sets resource limits (RLIMIT_NOFILE and the like), replacing
// any limit of the same type. Soft must not exceed hard.
func WithRlimits(limits ...specs.POSIXRlimit) Opt {
	return func(s *specs.Spec) error {
		for _, l := range limits {
			if !slices.Contains(knownRlimits(), l.Type) {
				return fmt.Errorf("rlimit %q unknown: %w", l.Type, ErrInvalidOption)
			}
			if l.Soft > l.Hard {
				return fmt.Errorf("rlimit %s: soft %d above hard %d: %w", l.Type, l.Soft, l.Hard, ErrInvalidOption)
			}
			s.Process.Rlimits = slices.DeleteFunc(s.Process.Rlimits, func(o specs.POSIXRlimit) bool { return o.Type == l.Type })
			s.Process.Rlimits = append(s.Process.Rlimits, l)
		}
		slices.SortFunc(s.Process.Rlimits, func(a, b specs.POSIXRlimit) int { return strings.Compare(a.Type, b.Type) })
		return nil
	}
}

// WithCgroupsPath places the replica's cgroups at p (absolute, e.g.
// "/rung/<tenant>/<replica>") under each controller's hierarchy. Without
// it the runtime picks a path from the container ID.
func WithCgroupsPath(p string) Opt {
	return func(s *specs.Spec) error {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return fmt.Errorf("cgroups path %q not a clean absolute path: %w", p, ErrInvalidOption)
		}
		s.Linux.CgroupsPath = p
		return nil
	}
}

// WithAnnotations adds annotations (metadata only; runtimes here do not
// read them as configuration).
func WithAnnotations(kv map[string]string) Opt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for k, v := range kv {
			s.Annotations[k] = v
		}
		return nil
	}
}

func knownRlimits() []string {
	return []string{
		"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
		"RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
		"RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
		"RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
	}
}

// capabilitySet puts caps in every set; nil means none (empty, not absent,
// so a runtime cannot fill in its own defaults).
func capabilitySet(caps []string) *specs.LinuxCapabilities {
	c := func() []string { return append([]string{}, caps...) }
	return &specs.LinuxCapabilities{
		Bounding: c(), Effective: c(), Inheritable: c(), Permitted: c(), Ambient: c(),
	}
}

func ensureNamespace(s *specs.Spec, t specs.LinuxNamespaceType) {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return
		}
	}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
}

func mergePaths(have []string, lists ...[]string) []string {
	out := slices.Clone(have)
	for _, l := range lists {
		for _, p := range l {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}
