package bundle

import (
	"errors"
	"fmt"
	"path"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/uidrange"
)

// Validate checks the always-on protections of DESIGN §1 on s and returns
// every missing one, each wrapping ErrNotHardened. It accepts only specs
// that New could have built: own user namespace mapped to one valid tenant
// range, no capability outside the allow-list, no_new_privs, a seccomp
// filter at least as strict as Docker's default, read-only root, only
// kernel and tmpfs mounts (no bind mounts from the host), no extra devices,
// masked and read-only /proc paths, new namespaces only, CPU, memory and
// PIDs limits, no hooks and no sysctls.
func Validate(s *specs.Spec) error {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }

	if s.Process == nil || s.Root == nil || s.Linux == nil {
		return fmt.Errorf("missing process, root or linux section: %w", ErrNotHardened)
	}
	p, l := s.Process, s.Linux

	if len(p.Args) == 0 {
		add("no command")
	}
	if !p.NoNewPrivileges {
		add("no_new_privs is off")
	}
	if p.Capabilities == nil {
		add("capability sets absent (runtime defaults would apply)")
	} else {
		c := p.Capabilities
		for i, set := range [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient} {
			for _, name := range set {
				if !slices.Contains(AllowedCapabilities(), name) {
					add("%s capability %s not allowed", capSetNames()[i], name)
				}
			}
		}
	}
	if !s.Root.Readonly {
		add("root filesystem is writable")
	}
	if s.Hooks != nil {
		add("hooks run on the host and are not allowed")
	}
	if len(l.Sysctl) > 0 {
		add("sysctls are not allowed")
	}
	if len(l.Devices) > 0 {
		add("extra device nodes are not allowed")
	}

	probs = append(probs, namespaceProblems(l.Namespaces)...)
	probs = append(probs, mappingProblems(s)...)
	probs = append(probs, mountProblems(s, s.Mounts)...)
	probs = append(probs, resourceProblems(l.Resources)...)
	probs = append(probs, seccompProblems(l.Seccomp)...)

	for _, m := range defaultMaskedPaths() {
		if !slices.Contains(l.MaskedPaths, m) {
			add("%s not masked", m)
		}
	}
	for _, r := range defaultReadonlyPaths() {
		if !slices.Contains(l.ReadonlyPaths, r) && !slices.Contains(l.MaskedPaths, r) {
			add("%s not read-only", r)
		}
	}

	if len(probs) == 0 {
		return nil
	}
	errs := make([]error, len(probs))
	for i, pr := range probs {
		errs[i] = fmt.Errorf("%s: %w", pr, ErrNotHardened)
	}
	return errors.Join(errs...)
}

func namespaceProblems(nss []specs.LinuxNamespace) []string {
	var out []string
	for _, ns := range nss {
		if ns.Path != "" {
			out = append(out, fmt.Sprintf("joins existing %s namespace %s", ns.Type, ns.Path))
		}
	}
	for _, t := range requiredNamespaces() {
		if !slices.ContainsFunc(nss, func(ns specs.LinuxNamespace) bool { return ns.Type == t }) {
			out = append(out, fmt.Sprintf("no own %s namespace", t))
		}
	}
	return out
}

// mappingProblems checks that uid and gid maps are one tenant range and that
// the process's user and groups fall inside it.
func mappingProblems(s *specs.Spec) []string {
	l := s.Linux
	if len(l.UIDMappings) != 1 || len(l.GIDMappings) != 1 {
		return []string{"user namespace must map exactly one uid and one gid range"}
	}
	u, g := l.UIDMappings[0], l.GIDMappings[0]
	var out []string
	if u.ContainerID != 0 || g.ContainerID != 0 || u.Size != g.Size {
		out = append(out, "uid and gid maps must start at container id 0 and have one size")
	}
	r := uidrange.Range{HostUID: u.HostID, HostGID: g.HostID, Size: u.Size}
	if err := r.Validate(); err != nil {
		out = append(out, err.Error())
	}
	usr := s.Process.User
	for _, id := range append([]uint32{usr.UID, usr.GID}, usr.AdditionalGids...) {
		if id >= r.Size {
			out = append(out, fmt.Sprintf("process id %d outside the mapped range of %d ids", id, r.Size))
		}
	}
	return out
}

func capSetNames() []string {
	return []string{"bounding", "effective", "inheritable", "permitted", "ambient"}
}

// mountTypes are the only filesystems a replica mounts.
func mountTypes() []string { return []string{"proc", "tmpfs", "devpts", "mqueue", "sysfs"} }

func mountProblems(s *specs.Spec, ms []specs.Mount) []string {
	var out []string
	hasTmp := false
	for _, m := range ms {
		if IsVolumeMount(s, m) { // volume.go: the one bind mount allowed
			continue
		}
		if !slices.Contains(mountTypes(), m.Type) {
			out = append(out, fmt.Sprintf("mount %s of type %q (host mounts are not allowed)", m.Destination, m.Type))
		}
		if slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			out = append(out, fmt.Sprintf("bind mount on %s", m.Destination))
		}
		if !path.IsAbs(m.Destination) || path.Clean(m.Destination) != m.Destination || m.Destination == "/" {
			out = append(out, fmt.Sprintf("mount destination %q", m.Destination))
		}
		if m.Type == "sysfs" && !slices.Contains(m.Options, "ro") {
			out = append(out, "sysfs mounted read-write")
		}
		if m.Destination == "/tmp" && m.Type == "tmpfs" {
			hasTmp = true
		}
	}
	if !hasTmp {
		out = append(out, "no tmpfs on /tmp")
	}
	return out
}

func resourceProblems(r *specs.LinuxResources) []string {
	if r == nil {
		return []string{"no cgroup limits"}
	}
	var out []string
	if r.CPU == nil || r.CPU.Quota == nil || *r.CPU.Quota <= 0 || r.CPU.Period == nil || *r.CPU.Period == 0 {
		out = append(out, "no cpu limit")
	}
	if m := r.Memory; m == nil || m.Limit == nil || *m.Limit <= 0 {
		out = append(out, "no memory limit")
	} else if m.Swap == nil || *m.Swap != *m.Limit {
		out = append(out, "memory+swap limit differs from memory limit (swap allowed)")
	}
	if r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit <= 0 {
		out = append(out, "no pids limit")
	}
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Type != "" && r.Devices[0].Type != "a" {
		out = append(out, "device cgroup does not start by denying all devices")
	}
	for _, d := range r.Devices {
		if !d.Allow {
			continue
		}
		if !slices.ContainsFunc(standardDevices(), func(sd [2]int64) bool {
			return d.Type == "c" && d.Major != nil && *d.Major == sd[0] &&
				(sd[1] < 0 && d.Minor == nil || d.Minor != nil && *d.Minor == sd[1])
		}) {
			out = append(out, "device cgroup allows a non-standard device")
		}
	}
	return out
}
