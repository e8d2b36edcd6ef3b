package bundle

import (
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// ptraceFamily are the syscalls that read or write another process's
// memory. Docker's default profile allows them on kernels ≥ 4.8; rung
// removes them for every replica (a tenant's replica never debugs a
// process, and the filter is then the same on every kernel).
func ptraceFamily() []string {
	return []string{"ptrace", "process_vm_readv", "process_vm_writev"}
}

// forbiddenSyscalls must never be allowed unconditionally (without an
// argument filter) by a replica's filter. Validate checks it; it is the part
// of Docker's profile that the escape tests of the container tier rely on.
func forbiddenSyscalls() []string {
	return []string{
		"add_key", "bpf", "delete_module", "finit_module", "init_module",
		"kexec_file_load", "kexec_load", "keyctl", "mount", "move_mount",
		"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
		"process_vm_readv", "process_vm_writev", "ptrace", "reboot",
		"request_key", "setns", "swapoff", "swapon", "umount2", "unshare",
		"userfaultfd",
	}
}

// defaultSeccomp returns Docker's default seccomp profile (the
// github.com/moby/profiles/seccomp module, which Docker itself uses)
// resolved for the capabilities in the spec's bounding set, without the
// ptrace family. Its default action is SCMP_ACT_ERRNO (EPERM): only
// listed syscalls run; unshare, mount, setns, keyctl, bpf and the like
// are allowed only with CAP_SYS_ADMIN (or similar), which no replica holds.
func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	probe := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
	if s.Process != nil && s.Process.Capabilities != nil {
		probe.Process.Capabilities.Bounding = slices.Clone(s.Process.Capabilities.Bounding)
	}
	p, err := seccomp.GetDefaultProfile(probe)
	if err != nil {
		return nil, fmt.Errorf("docker default seccomp profile: %w", err)
	}
	out := p.Syscalls[:0]
	for _, sc := range p.Syscalls {
		sc.Names = slices.DeleteFunc(slices.Clone(sc.Names), func(n string) bool {
			return slices.Contains(ptraceFamily(), n)
		})
		if len(sc.Names) > 0 {
			out = append(out, sc)
		}
	}
	p.Syscalls = out
	return p, nil
}

// seccompProblems lists what makes f weaker than rung's profile.
func seccompProblems(f *specs.LinuxSeccomp) []string {
	if f == nil {
		return []string{"no seccomp filter"}
	}
	var out []string
	if f.DefaultAction != specs.ActErrno {
		out = append(out, fmt.Sprintf("seccomp default action %s, want %s", f.DefaultAction, specs.ActErrno))
	}
	for _, sc := range f.Syscalls {
		if sc.Action != specs.ActAllow || len(sc.Args) > 0 {
			continue
		}
		for _, n := range sc.Names {
			if slices.Contains(forbiddenSyscalls(), n) {
				out = append(out, fmt.Sprintf("seccomp allows %s", n))
			}
		}
	}
	return out
}
