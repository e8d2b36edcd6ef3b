package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/uidrange"
)

// Annotations of a replica's spec that name its tenant and the tier it is
// reported as (set by internal/replica).
const (
	AnnotationTenant = "dev.rung.tenant"
	AnnotationTier   = "dev.rung.tier"
)

// Driver is what Replica needs of a runtime driver (runtime.OCI has it):
// the tier it runs, a container's state, and its host processes.
type Driver interface {
	Tier() string
	State(ctx context.Context, id string) (runtime.State, error)
	HostProcesses(ctx context.Context, id string) ([]runtime.HostProcess, error)
}

// Replica is the proof of one replica's isolation: each of its host
// processes inspected and checked against the tier and the replica's spec.
type Replica struct {
	ID string `json:"id"`
	// Tenant is the spec's dev.rung.tenant annotation, if any.
	Tenant string `json:"tenant,omitempty"`
	// Tier is the tier the replica is reported as (the spec's dev.rung.tier
	// annotation, else the driver's tier); the tier finding checks that the
	// processes really are that tier.
	Tier   string         `json:"tier"`
	Status runtime.Status `json:"status"`
	Pid    int            `json:"pid"`
	Bundle string         `json:"bundle"`
	// Processes are the inspected host processes; Findings the checks of
	// every one of them.
	Processes []Process `json:"processes,omitempty"`
	Findings  []Finding `json:"findings,omitempty"`
	// Resources are the replica's cgroup limits and counters (of its first
	// process, or of the spec's cgroup once it has stopped).
	Resources Resources `json:"resources"`
	// Problems are what kept a property from being checked (an unreadable
	// spec, a vanished process); each makes the replica fail.
	Problems []string `json:"problems,omitempty"`
	// HostSide says what the findings prove, read from the host; Inside
	// what gVisor enforces in the sandbox, which the host cannot see.
	HostSide []string `json:"hostSide,omitempty"`
	Inside   []string `json:"inside,omitempty"`
	// tenantRange is the spec's uid range (SeparateSentries).
	tenantRange uidrange.Range
	// SentryUID is the host uid of a sandbox's sentry (gVisor's kernel), as
	// /proc/PID/status shows it: its tenant's nobody (the range's
	// HostUID+65534) when runsc ran in the tenant's user namespace, host
	// nobody (65534) when it ran as host root. Nil for other tiers.
	SentryUID *uint32 `json:"sentryUID,omitempty"`
	// Weaknesses are separations the replica lacks though every checked
	// property holds: what an attacker who breaks out of it could reach.
	// They don't fail the replica (nothing rung controls is wrong), but
	// are never reported as "ok".
	Weaknesses []string `json:"weaknesses,omitempty"`
	// Network is the replica's tenant network as the kernel has it
	// (address, namespace inode, the rules that apply to it); nil without
	// one. Filled by the caller that knows the node's networks.
	Network *Network `json:"network,omitempty"`
}

// Network is a replica's tenant network read from the kernel.
type Network struct {
	// Address is the address on its eth0, read in its own namespace.
	Address string `json:"address"`
	// Interface is the node's end of its link.
	Interface string `json:"interface"`
	// NetNSInode is its network namespace; HostNetNSInode the node's.
	NetNSInode     uint64 `json:"netnsInode"`
	HostNetNSInode uint64 `json:"hostNetnsInode"`
	// Rules are its chains in the node's nftables table (in: who may
	// connect to it; out: what it may reach), in nft's words.
	Rules []string `json:"rules"`
	// Netstack: a sandbox on gVisor's network stack holds Address inside;
	// its namespace's eth0 was checked to have none.
	Netstack bool `json:"netstack,omitempty"`
}

// SharedSentryUID says why a sandbox whose sentry runs as host uid 65534
// is weaker than a container (issue 19; the escape suite's
// TestSentrySeccompSignals and TestSentrySeparation, docs/hygiene.md). rung
// runs every sandbox's runsc in its tenant's user namespace, so only a
// sandbox started otherwise (by an older rung, or by hand) shows it.
const SharedSentryUID = "the sentry runs as host uid 65534, as every gVisor sandbox started by runsc as host root does, " +
	"in the host's PID namespace: the kernel lets a process with its credentials signal every such sentry of other " +
	"tenants, and gVisor's own seccomp filter on the sentry (Seccomp 2, checked) allows tgkill with any pid, so a " +
	"compromised sentry can kill other tenants' sandboxes (denial of service). Restart the replica: rung runs a " +
	"sandbox's runsc in a user namespace mapped to its tenant's range, so that each tenant's sentry has a host uid of its own"

// SentryOutsideRange says why a sentry whose host uid is not in its
// tenant's range is weak: nothing shows that no other tenant's sentry
// shares it.
const SentryOutsideRange = "the sentry's host uid is outside its tenant's uid range, so nothing keeps another tenant's " +
	"sentry from sharing it (and signalling this one: gVisor's seccomp filter allows tgkill with any pid)"

// SentryUIDShared is the weakness of sandboxes of different tenants whose
// sentries share a host uid (SeparateSentries).
const SentryUIDShared = "its sentry's host uid is also the sentry's of another tenant's sandbox"

// SeparateSentries reports as weak every sandbox replica whose sentry
// shares its host uid with the sentry of another tenant's replica (a
// different dev.rung.tenant annotation, or another uid range): "ok" only
// when two tenants' sentries have different host uids.
func SeparateSentries(reps []Replica) {
	for i := range reps {
		a := &reps[i]
		if a.SentryUID == nil {
			continue
		}
		for j := range reps {
			b := reps[j]
			if i == j || b.SentryUID == nil || *b.SentryUID != *a.SentryUID || sameTenant(*a, b) {
				continue
			}
			w := fmt.Sprintf("%s (%d, also replica %s's)", SentryUIDShared, *a.SentryUID, b.ID)
			if !slices.Contains(a.Weaknesses, w) {
				a.Weaknesses = append(a.Weaknesses, w)
			}
		}
	}
}

// sameTenant: the same tenant annotation, or (without one) the same range.
func sameTenant(a, b Replica) bool {
	if a.Tenant != "" || b.Tenant != "" {
		return a.Tenant == b.Tenant
	}
	return a.tenantRange == b.tenantRange
}

// Process is one inspected host process of a replica.
type Process struct {
	Role   string `json:"role"`
	Report Report `json:"report"`
}

// Holds reports whether every checked property holds and nothing kept a
// property from being checked. A stopped replica runs nothing to prove and
// holds unless its spec could not be read.
func (r Replica) Holds() bool {
	if len(r.Problems) > 0 {
		return false
	}
	if r.Status == runtime.Stopped {
		return true
	}
	return len(r.Findings) > 0 && !slices.ContainsFunc(r.Findings, func(f Finding) bool { return !f.Holds })
}

// Failures returns the findings that do not hold.
func (r Replica) Failures() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if !f.Holds {
			out = append(out, f)
		}
	}
	return out
}

// OOMKilled reports whether the kernel's OOM killer killed a process of the
// replica's cgroup.
func (r Replica) OOMKilled() bool { return r.Resources.OOMKills > 0 }

// Primary is the process that stands for the replica: runc's init or
// gVisor's sentry. ok is false when none was inspected.
func (r Replica) Primary() (p Process, ok bool) {
	for _, p := range r.Processes {
		if p.Role == RoleInit || p.Role == RoleSandbox {
			return p, true
		}
	}
	return Process{}, false
}

// Replica inspects container id of driver d: its state, its spec (from the
// bundle) and, while it runs, each host process, checked against what the
// tier and the spec ask. A stopped replica has no processes left; its
// cgroup's counters (until the runtime deletes it) still say whether it was
// OOM-killed. Errors are for the
// driver's calls (an unknown id wraps runtime.ErrNotFound); what could not
// be checked is a Problem and fails the replica.
func (h Host) Replica(ctx context.Context, d Driver, id string) (Replica, error) {
	st, err := d.State(ctx, id)
	if err != nil {
		return Replica{}, fmt.Errorf("verify %s: %w", id, err)
	}
	rep := Replica{ID: id, Tier: d.Tier(), Status: st.Status, Pid: st.Pid, Bundle: st.Bundle}
	spec, err := bundle.Read(st.Bundle)
	if err != nil {
		// Fail closed: without the spec the limits cannot be compared.
		rep.Problems = append(rep.Problems, fmt.Sprintf("spec: %v", err))
		spec = nil
	} else {
		rep.Tenant = spec.Annotations[AnnotationTenant]
		if t := spec.Annotations[AnnotationTier]; t != "" {
			rep.Tier = t
		}
	}
	// The host tier is a runc container on a host of its own: its processes
	// are checked as the container tier's.
	checkTier := rep.Tier
	if checkTier == "host" {
		checkTier = TierContainer
	}
	if st.Status == runtime.Stopped || st.Pid <= 0 {
		// Nothing runs, so nothing is exposed; the cgroup still says how
		// it ended.
		if cg := cgroupsPath(spec); cg != "" {
			if res, err := h.CgroupResources(ctx, cg); err == nil {
				rep.Resources = res
			}
		}
		return rep, nil
	}
	procs, err := d.HostProcesses(ctx, id)
	if err != nil {
		return Replica{}, fmt.Errorf("verify %s: %w", id, err)
	}
	for _, hp := range procs {
		r, err := h.Inspect(ctx, hp.Pid)
		if errors.Is(err, ErrNoProcess) && (hp.Role == RoleStub || hp.Role == RoleProcess) {
			continue // a short-lived helper or workload process ended
		}
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s pid %d: %v", hp.Role, hp.Pid, err))
			continue
		}
		rep.Processes = append(rep.Processes, Process{Role: hp.Role, Report: r})
		rep.Findings = append(rep.Findings, Check(r, Expect(checkTier, hp.Role, spec))...)
	}
	if p, ok := rep.Primary(); ok {
		rep.Resources = p.Report.Resources
	} else {
		rep.Problems = append(rep.Problems, "no init or sandbox process found")
	}
	rep.HostSide, rep.Inside = scope(d.Tier())
	rep.tenantRange = Expect(checkTier, RoleSandbox, spec).Range
	for _, p := range rep.Processes {
		if p.Role != RoleSandbox {
			continue
		}
		uid := p.Report.UID.Effective
		rep.SentryUID = &uid
		ids, r := p.Report.UID.all(), rep.tenantRange
		switch {
		case slices.Contains(ids, Nobody):
			rep.Weaknesses = append(rep.Weaknesses, SharedSentryUID)
		case slices.ContainsFunc(ids, func(id uint32) bool { return !inRange(id, r.HostUID, r.Size) }):
			rep.Weaknesses = append(rep.Weaknesses, SentryOutsideRange)
		}
		break
	}
	return rep, nil
}

func cgroupsPath(s *specs.Spec) string {
	if s == nil || s.Linux == nil {
		return ""
	}
	return s.Linux.CgroupsPath
}

// scope says what the findings of a tier prove from the host, and what
// only the sandbox's kernel enforces.
func scope(tier string) (hostSide, inside []string) {
	if tier != TierSandbox {
		return []string{
			"the workload's own processes, read from the host: ids, user namespace map, capabilities, " +
				"no_new_privs, seccomp mode, namespaces, root mount, cgroup limits",
		}, nil
	}
	return []string{
			"gVisor's host processes (sentry, ptrace stubs, gofer): not host root, user namespace maps " +
				"(sentry: only nobody; gofer: the tenant's range), capabilities only inside their own user " +
				"namespaces, no_new_privs, seccomp filters, own namespaces, read-only roots, no host mounts",
			"the sentry runs with --oci-seccomp, so it applies the spec's seccomp filter to the workload",
			"the replica's cgroup limits (CPU, memory, PIDs), which bound the sentry, stubs and gofer " +
				"and so everything the workload does",
		}, []string{
			"the workload's uid map, capabilities and no_new_privs (gVisor's own user namespace and credentials)",
			"the spec's seccomp filter on each of the workload's system calls (switched on by --oci-seccomp, above)",
			"the read-only root and the masked /proc paths (gVisor's VFS)",
			"the workload's PID namespace (gVisor's; the sentry itself stays in the host's for ptrace)",
		}
}
