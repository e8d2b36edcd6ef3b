package policy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/bundle"
)

// WorkloadInput is what admission knows about one workload.
type WorkloadInput struct {
	// Tenant is the workload's tenant, defaults applied.
	Tenant v1.Tenant
	// Workload is the manifest as applied, defaults applied.
	Workload v1.Workload
	// Runtime is the OCI runtime spec the replica would run with, as built
	// by internal/bundle from the workload and its image. It is nil at
	// apply time when the image has not been resolved yet; the checks that
	// need it are then listed in Decision.Skipped, and the node runs them
	// again, with the spec, before it creates the replica.
	Runtime *specs.Spec
	// Now is the time of the decision.
	Now time.Time
}

// workloadCheck is a built-in workload check: eval returns one detail per
// failure. Checks with runtime set only judge the OCI spec.
type workloadCheck struct {
	Check
	runtime bool
	eval    func(e *Engine, in *WorkloadInput) []string
}

// Workload judges a workload: every built-in workload check, then the
// operator's workload rules.
func (e *Engine) Workload(in WorkloadInput) Decision {
	d := Decision{
		Kind:    KindWorkload,
		Tenant:  in.Tenant.Metadata.Name,
		Subject: in.Workload.Metadata.Name,
		Time:    in.Now,
	}
	d.BlockSeverity = blockSeverity(&in.Tenant, nil)
	for _, c := range e.workloadChecks {
		if c.runtime && in.Runtime == nil {
			d.Skipped = append(d.Skipped, c.ID+": needs the runtime spec (checked again on the node)")
			continue
		}
		d.Checked = append(d.Checked, c.ID)
		for _, detail := range c.eval(e, &in) {
			d.judge(c.finding(detail, ""), c.Blocks)
		}
	}
	e.evalRules(&d, KindWorkload, workloadVars(&in))
	d.finish()
	return d
}

// builtinWorkloadChecks are the CIS Docker Benchmark v1.6.0 section 5 items
// (and section 4 item 4.1) that apply to a platform that owns the runtime,
// and the Pod Security Standards controls of the restricted profile. Items
// that are about the Docker daemon, the docker CLI or host-side networking
// (swarm, AppArmor/SELinux options, docker exec, docker0, restart policy,
// host interface binding, sshd) have no counterpart here; ports are judged
// on the image (CIS-5.8, CIS-5.9).
func builtinWorkloadChecks() []workloadCheck {
	return []workloadCheck{
		{Check: Check{
			ID: "CIS-5.4", Title: "Linux capabilities are restricted", Severity: SeverityHigh,
			Fix:  "request only capabilities from the allow-list (" + strings.Join(allowedCapsDoc(), ", ") + ")",
			Refs: []string{"PSS-restricted-capabilities"},
		}, eval: checkCapabilities},
		{Check: Check{
			ID: "RUNG-elevated-capabilities", Title: "Capabilities are granted only to elevated workloads", Severity: SeverityMedium,
			Fix: "set spec.privilege: elevated on the workload, or remove spec.capabilities",
		}, eval: func(_ *Engine, in *WorkloadInput) []string {
			w := in.Workload.Spec
			if len(w.Capabilities) > 0 && w.Privilege != v1.PrivilegeElevated {
				return []string{fmt.Sprintf("privilege %q requests capabilities %s", cmp.Or(string(w.Privilege), string(v1.DefaultPrivilege)), strings.Join(w.Capabilities, ", "))}
			}
			return nil
		}},
		{Check: Check{
			ID: "RUNG-registry-allow-list", Title: "The workload's image is under one of the tenant's registries", Severity: SeverityHigh,
			Fix: "use an image from one of the tenant's registries (spec.images.registries), or ask an operator to add its registry",
		}, eval: checkRegistry},
		{Check: Check{
			ID: "CIS-4.1", Title: "Container runs as a non-root user", Severity: SeverityHigh,
			Fix:  "set USER in the image to a non-zero numeric uid (e.g. USER 65532:65532)",
			Refs: []string{"PSS-restricted-running-as-non-root", "PSS-restricted-running-as-non-root-user"},
			// The same control as the image's CIS-4.1, so the same threshold:
			// uid 0 here is the tenant's own id range, without capabilities.
			Blocks: BlockAtSeverity,
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if p := in.Runtime.Process; p == nil || p.User.UID == 0 {
				return []string{"process uid is 0"}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.5", Title: "Privileged containers are not used", Severity: SeverityCritical,
			Fix:  "the platform never runs privileged replicas; rebuild the spec with internal/bundle",
			Refs: []string{"PSS-baseline-privileged-containers"},
		}, runtime: true, eval: checkPrivileged},
		{Check: Check{
			ID: "CIS-5.6", Title: "Host directories are not mounted", Severity: SeverityCritical,
			Fix:  "remove bind mounts; only proc, sysfs (read-only), tmpfs, devpts and mqueue are allowed",
			Refs: []string{"PSS-baseline-hostpath-volumes", "CIS-5.32"},
		}, runtime: true, eval: checkHostMounts},
		namespaceCheck("CIS-5.10", "The host's network namespace is not shared", specs.NetworkNamespace, "PSS-baseline-host-namespaces"),
		namespaceCheck("CIS-5.16", "The host's process namespace is not shared", specs.PIDNamespace, "PSS-baseline-host-namespaces"),
		namespaceCheck("CIS-5.17", "The host's IPC namespace is not shared", specs.IPCNamespace, "PSS-baseline-host-namespaces"),
		namespaceCheck("CIS-5.21", "The host's UTS namespace is not shared", specs.UTSNamespace),
		namespaceCheck("RUNG-mount-namespace", "The replica has its own mount namespace", specs.MountNamespace),
		{Check: Check{
			ID: "CIS-5.31", Title: "The host's user namespace is not shared", Severity: SeverityCritical,
			Fix: "run in an own user namespace mapping the tenant's UID/GID range (never host id 0)",
		}, runtime: true, eval: checkUserNamespace},
		{Check: Check{
			ID: "CIS-5.11", Title: "Memory usage is limited", Severity: SeverityMedium,
			Fix: "set spec.resources.memory (e.g. 256Mi); swap must not exceed it",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			r := resources(in.Runtime)
			if r == nil || r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit <= 0 {
				return []string{"no memory limit"}
			}
			if r.Memory.Swap == nil || *r.Memory.Swap != *r.Memory.Limit {
				return []string{"memory+swap limit differs from the memory limit (swap allowed)"}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.12", Title: "CPU usage is limited", Severity: SeverityMedium,
			Fix: "set spec.resources.cpu (e.g. 500m)",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			r := resources(in.Runtime)
			if r == nil || r.CPU == nil || r.CPU.Quota == nil || *r.CPU.Quota <= 0 || r.CPU.Period == nil || *r.CPU.Period == 0 {
				return []string{"no CPU quota"}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.29", Title: "The PIDs cgroup limit is used", Severity: SeverityMedium,
			Fix: "set spec.resources.pids (e.g. 128)",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			r := resources(in.Runtime)
			if r == nil || r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit <= 0 {
				return []string{"no PIDs limit"}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.13", Title: "The root filesystem is mounted read-only", Severity: SeverityMedium,
			Fix: "keep the root read-only; write to /tmp (a tmpfs) instead",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if in.Runtime.Root == nil || !in.Runtime.Root.Readonly {
				return []string{"root filesystem is writable"}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.18", Title: "Host devices are not exposed", Severity: SeverityHigh,
			Fix: "remove extra device nodes; the replica gets only null, zero, full, random, urandom, tty and its own ptys",
		}, runtime: true, eval: checkDevices},
		{Check: Check{
			ID: "CIS-5.20", Title: "Mount propagation is not shared", Severity: SeverityMedium,
			Fix: "use private (the default) mount propagation",
		}, runtime: true, eval: checkPropagation},
		{Check: Check{
			ID: "CIS-5.22", Title: "The default seccomp profile is not disabled", Severity: SeverityHigh,
			Fix:  "apply Docker's default seccomp profile (bundle.WithDefaultSeccomp)",
			Refs: []string{"PSS-restricted-seccomp"},
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if l := in.Runtime.Linux; l == nil || l.Seccomp == nil {
				return []string{"no seccomp filter"}
			} else if l.Seccomp.DefaultAction == specs.ActAllow || l.Seccomp.DefaultAction == specs.ActLog {
				return []string{fmt.Sprintf("seccomp default action %s allows every syscall not listed", l.Seccomp.DefaultAction)}
			}
			return nil
		}},
		{Check: Check{
			ID: "CIS-5.26", Title: "The container cannot acquire additional privileges", Severity: SeverityHigh,
			Fix:  "set no_new_privs (bundle.WithNoNewPrivileges)",
			Refs: []string{"PSS-restricted-privilege-escalation"},
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if p := in.Runtime.Process; p == nil || !p.NoNewPrivileges {
				return []string{"no_new_privs is off"}
			}
			return nil
		}},
		{Check: Check{
			ID: "PSS-baseline-sysctls", Title: "No sysctls are set", Severity: SeverityMedium,
			Fix: "remove sysctls from the spec",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if l := in.Runtime.Linux; l != nil && len(l.Sysctl) > 0 {
				return []string{"sysctls " + strings.Join(slices.Sorted(maps.Keys(l.Sysctl)), ", ")}
			}
			return nil
		}},
		{Check: Check{
			ID: "PSS-baseline-proc-mount", Title: "/proc is masked as by the default runtime", Severity: SeverityMedium,
			Fix: "keep the default masked paths (" + strings.Join(requiredMasked(), ", ") + ")",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			var masked []string
			if in.Runtime.Linux != nil {
				masked = in.Runtime.Linux.MaskedPaths
			}
			var missing []string
			for _, p := range requiredMasked() {
				if !slices.Contains(masked, p) {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				return []string{"not masked: " + strings.Join(missing, ", ")}
			}
			return nil
		}},
		{Check: Check{
			ID: "RUNG-hooks", Title: "No OCI hooks run on the host", Severity: SeverityCritical,
			Fix: "remove hooks from the spec",
		}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
			if in.Runtime.Hooks != nil {
				return []string{"spec has hooks"}
			}
			return nil
		}},
	}
}

// allowedCapsDoc is the allow-list for fix texts; it mirrors the engine's
// (both come from internal/bundle).
func allowedCapsDoc() []string { return allowedCapabilities() }

// requiredMasked are the /proc and /sys paths every runtime masks (Docker's
// and containerd's default list, the PSS "Default" proc mount).
func requiredMasked() []string {
	return []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"}
}

func namespaceCheck(id, title string, typ specs.LinuxNamespaceType, refs ...string) workloadCheck {
	return workloadCheck{Check: Check{
		ID: id, Title: title, Severity: SeverityCritical,
		Fix:  fmt.Sprintf("give the replica a new %s namespace (no path)", typ),
		Refs: refs,
	}, runtime: true, eval: func(_ *Engine, in *WorkloadInput) []string {
		var nss []specs.LinuxNamespace
		if in.Runtime.Linux != nil {
			nss = in.Runtime.Linux.Namespaces
		}
		i := slices.IndexFunc(nss, func(ns specs.LinuxNamespace) bool { return ns.Type == typ })
		switch {
		case i < 0:
			return []string{fmt.Sprintf("no own %s namespace: the host's is shared", typ)}
		case nss[i].Path != "":
			return []string{fmt.Sprintf("joins %s namespace %s", typ, nss[i].Path)}
		}
		return nil
	}}
}

func checkCapabilities(e *Engine, in *WorkloadInput) []string {
	var out []string
	for _, c := range in.Workload.Spec.Capabilities {
		if !slices.Contains(e.allowedCaps, capName(c)) {
			out = append(out, fmt.Sprintf("spec.capabilities requests %s", c))
		}
	}
	if in.Runtime != nil {
		if p := in.Runtime.Process; p != nil && p.Capabilities != nil {
			c := p.Capabilities
			sets := [][]string{c.Bounding, c.Effective, c.Inheritable, c.Permitted, c.Ambient}
			seen := map[string]bool{}
			for _, set := range sets {
				for _, name := range set {
					if !slices.Contains(e.allowedCaps, name) && !seen[name] {
						seen[name] = true
						out = append(out, fmt.Sprintf("runtime grants %s", name))
					}
				}
			}
		}
	}
	return out
}

// capName normalizes "net_bind_service" and "NET_BIND_SERVICE" to
// "CAP_NET_BIND_SERVICE".
func capName(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

func checkPrivileged(_ *Engine, in *WorkloadInput) []string {
	var out []string
	if p := in.Runtime.Process; p != nil && p.Capabilities != nil && slices.Contains(p.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		out = append(out, "CAP_SYS_ADMIN in the bounding set")
	}
	if l := in.Runtime.Linux; l == nil || len(l.MaskedPaths) == 0 && len(l.ReadonlyPaths) == 0 {
		out = append(out, "no masked or read-only /proc paths")
	}
	if r := resources(in.Runtime); r != nil {
		for _, d := range r.Devices {
			if d.Allow && (d.Type == "" || d.Type == "a") && d.Major == nil {
				out = append(out, "device cgroup allows every device")
				break
			}
		}
	}
	return out
}

func checkHostMounts(_ *Engine, in *WorkloadInput) []string {
	kernel := []string{"proc", "tmpfs", "devpts", "mqueue", "sysfs"}
	var out []string
	for _, m := range in.Runtime.Mounts {
		switch {
		case bundle.IsVolumeMount(in.Runtime, m): // a tenant's volume, nosuid,nodev
		case slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") || m.Type == "bind":
			out = append(out, fmt.Sprintf("bind mount of %s on %s", m.Source, m.Destination))
		case !slices.Contains(kernel, m.Type):
			out = append(out, fmt.Sprintf("mount of type %q on %s", m.Type, m.Destination))
		case m.Type == "sysfs" && !slices.Contains(m.Options, "ro"):
			out = append(out, "sysfs mounted read-write on "+m.Destination)
		}
	}
	return out
}

func checkUserNamespace(_ *Engine, in *WorkloadInput) []string {
	l := in.Runtime.Linux
	if l == nil {
		return []string{"no linux section"}
	}
	i := slices.IndexFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace })
	switch {
	case i < 0:
		return []string{"no own user namespace: container root is host root"}
	case l.Namespaces[i].Path != "":
		return []string{"joins user namespace " + l.Namespaces[i].Path}
	case len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0:
		return []string{"user namespace without uid/gid mappings"}
	}
	var out []string
	for _, m := range append(slices.Clone(l.UIDMappings), l.GIDMappings...) {
		if m.HostID == 0 {
			out = append(out, fmt.Sprintf("maps container id %d to host id 0", m.ContainerID))
		}
	}
	return out
}

func checkDevices(_ *Engine, in *WorkloadInput) []string {
	var out []string
	if l := in.Runtime.Linux; l != nil {
		for _, d := range l.Devices {
			out = append(out, "device node "+d.Path)
		}
	}
	if r := resources(in.Runtime); r == nil {
		out = append(out, "no device cgroup")
	} else {
		if len(r.Devices) == 0 || r.Devices[0].Allow {
			out = append(out, "device cgroup does not start by denying every device")
		}
	}
	return out
}

func checkPropagation(_ *Engine, in *WorkloadInput) []string {
	shared := func(s string) bool { return s == "shared" || s == "rshared" }
	var out []string
	if l := in.Runtime.Linux; l != nil && shared(l.RootfsPropagation) {
		out = append(out, "rootfs propagation "+l.RootfsPropagation)
	}
	for _, m := range in.Runtime.Mounts {
		if slices.ContainsFunc(m.Options, shared) {
			out = append(out, "shared propagation on "+m.Destination)
		}
	}
	return out
}

func resources(s *specs.Spec) *specs.LinuxResources {
	if s.Linux == nil {
		return nil
	}
	return s.Linux.Resources
}

// checkRegistry judges the image reference as written in the workload
// against the tenant's registry allow-list, at apply time, before the
// image is resolved (RUNG-image-registry judges the resolved image).
func checkRegistry(_ *Engine, in *WorkloadInput) []string {
	ref, prefixes := in.Workload.Spec.Image, in.Tenant.Spec.Images.Registries
	if ref == "" || len(prefixes) == 0 {
		return nil
	}
	repo := ""
	if isRegistryRef(ref) {
		repo = repositoryOf(ref)
	}
	if registryAllowed(ref, repo, prefixes) {
		return nil
	}
	where := ref
	if repo == "" {
		where += " (not a registry reference)"
	}
	return []string{fmt.Sprintf("image %s is not under %s", where, strings.Join(prefixes, ", "))}
}

// repositoryOf strips the tag and digest from a registry reference.
func repositoryOf(ref string) string {
	repo, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo
}
