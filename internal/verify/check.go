package verify

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/uidrange"
)

// Property names one hardening property that Check decides.
type Property string

// The properties, in the order Check reports them.
const (
	PropTier         Property = "tier"
	PropNotHostRoot  Property = "not-host-root"
	PropUIDMap       Property = "uid-map"
	PropNamespaces   Property = "namespaces"
	PropCapabilities Property = "capabilities"
	PropNoNewPrivs   Property = "no-new-privs"
	PropSeccomp      Property = "seccomp"
	// PropWorkloadSeccomp (sandbox only): the sentry applies the spec's
	// seccomp filter to the workload (runsc --oci-seccomp).
	PropWorkloadSeccomp Property = "workload-seccomp"
	PropReadonlyRoot    Property = "read-only-root"
	PropNoHostMounts    Property = "no-host-mounts"
	PropMemory          Property = "memory-limit"
	PropNoSwap          Property = "no-swap"
	PropPids            Property = "pids-limit"
	PropCPU             Property = "cpu-limit"
)

// Roles of a replica's host processes (runtime.HostProcess.Role).
const (
	// RoleInit is a runc container's init; RoleProcess another process of it.
	RoleInit    = "init"
	RoleProcess = "process"
	// RoleSandbox is gVisor's kernel (the sentry), RoleStub its ptrace
	// platform stubs, RoleGofer its file proxy.
	RoleSandbox = "sandbox"
	RoleStub    = "stub"
	RoleGofer   = "gofer"
)

// Nobody is the host UID and GID that runsc runs the sentry and its stubs
// as, in a user namespace that maps only it.
const Nobody = 65534

// Finding says whether one property holds for one process.
type Finding struct {
	Pid      int      `json:"pid"`
	Role     string   `json:"role"`
	Property Property `json:"property"`
	Holds    bool     `json:"holds"`
	// Got is what the live process shows, Want what the tier and spec ask.
	Got  string `json:"got"`
	Want string `json:"want"`
}

// String formats f as one line: "ok   sandbox 123 seccomp: got 2, want 2".
func (f Finding) String() string {
	v := "FAIL"
	if f.Holds {
		v = "ok"
	}
	return fmt.Sprintf("%-4s %s %d %s: got %s, want %s", v, f.Role, f.Pid, f.Property, f.Got, f.Want)
}

// Expectation is what one host process of a replica must show.
type Expectation struct {
	// Tier is TierContainer or TierSandbox; Role the process's role.
	Tier string `json:"tier"`
	Role string `json:"role"`
	// Range is the tenant's host ID range. The zero Range checks only
	// that nothing maps host root.
	Range uidrange.Range `json:"range"`
	// Capabilities are those the spec grants (from the allow-list); a
	// process may hold no others, beyond what its runsc role needs inside
	// its own user namespace.
	Capabilities []string `json:"capabilities,omitempty"`
	// Namespaces are the /proc/PID/ns types that must be private, beyond
	// the role's defaults (see requiredNamespaces).
	Namespaces []string `json:"namespaces,omitempty"`
	// MemoryLimit, PidsLimit, CPUQuota and CPUPeriod are the spec's limits;
	// 0 asks only that some limit is set. NoSwap asks memory+swap to equal
	// memory.
	MemoryLimit int64 `json:"memoryLimit"`
	NoSwap      bool  `json:"noSwap"`
	PidsLimit   int64 `json:"pidsLimit"`
	CPUQuota    int64 `json:"cpuQuota"`
	CPUPeriod   int64 `json:"cpuPeriod"`
}

// Expect derives the expectation of a process with role in a replica of
// tier built from spec s (bundle.New): its tenant range, granted
// capabilities (those of bundle.AllowedCapabilities only), namespaces and
// limits. A nil spec expects the tier's
// always-on properties with any range and any limits.
func Expect(tier, role string, s *specs.Spec) Expectation {
	e := Expectation{Tier: tier, Role: role, NoSwap: true}
	if s == nil || s.Linux == nil {
		return e
	}
	l := s.Linux
	if len(l.UIDMappings) == 1 && len(l.GIDMappings) == 1 && l.UIDMappings[0].Size == l.GIDMappings[0].Size {
		e.Range = uidrange.Range{HostUID: l.UIDMappings[0].HostID, HostGID: l.GIDMappings[0].HostID, Size: l.UIDMappings[0].Size}
	}
	if s.Process != nil && s.Process.Capabilities != nil {
		// Only allow-listed grants count: a spec that grants more is checked
		// against what bundle.New could have built.
		for _, c := range s.Process.Capabilities.Effective {
			if slices.Contains(bundle.AllowedCapabilities(), c) {
				e.Capabilities = append(e.Capabilities, c)
			}
		}
	}
	if role == RoleInit || role == RoleProcess {
		for _, ns := range l.Namespaces {
			if t := procNamespace(ns.Type); t != "" && !slices.Contains(e.Namespaces, t) {
				e.Namespaces = append(e.Namespaces, t)
			}
		}
	}
	if r := l.Resources; r != nil {
		if r.Memory != nil && r.Memory.Limit != nil {
			e.MemoryLimit = *r.Memory.Limit
			e.NoSwap = r.Memory.Swap == nil || *r.Memory.Swap == *r.Memory.Limit
		}
		if r.Pids != nil && r.Pids.Limit != nil {
			e.PidsLimit = *r.Pids.Limit
		}
		if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
			e.CPUQuota, e.CPUPeriod = *r.CPU.Quota, int64(*r.CPU.Period)
		}
	}
	return e
}

// procNamespace maps an OCI namespace type to its /proc/PID/ns name.
func procNamespace(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.PIDNamespace:
		return "pid"
	case specs.NetworkNamespace:
		return "net"
	case specs.MountNamespace:
		return "mnt"
	case specs.IPCNamespace:
		return "ipc"
	case specs.UTSNamespace:
		return "uts"
	case specs.UserNamespace:
		return "user"
	case specs.CgroupNamespace:
		return "cgroup"
	case specs.TimeNamespace:
		return "time"
	}
	return ""
}

// requiredNamespaces are the namespaces a role's process must not share
// with the host. A runc container has all of DESIGN §1's own. runsc keeps
// the sentry and its stubs in the host PID namespace (the ptrace platform
// traces its stubs from there) and gives the workload gVisor's own PID
// namespace inside; its gofer gets every one.
func requiredNamespaces(role string) []string {
	switch role {
	case RoleSandbox, RoleStub:
		return []string{"ipc", "mnt", "net", "user", "uts"}
	default:
		return []string{"ipc", "mnt", "net", "pid", "user", "uts"}
	}
}

// roleCapabilities are the capabilities runsc gives its own host processes,
// each inside a user namespace of its own: the sentry and stubs
// CAP_SYS_ADMIN and CAP_SYS_CHROOT in a namespace that maps only nobody,
// the gofer file-serving capabilities in one that maps the tenant's range.
func roleCapabilities(role string) []string {
	switch role {
	case RoleSandbox, RoleStub:
		return []string{"CAP_SYS_ADMIN", "CAP_SYS_CHROOT"}
	case RoleGofer:
		return []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_SYS_CHROOT"}
	}
	return nil
}

// Check decides every property of one process against expect and returns
// one Finding per property, in the order of the Prop constants.
func Check(r Report, expect Expectation) []Finding {
	var out []Finding
	add := func(p Property, holds bool, got, want string) {
		out = append(out, Finding{Pid: r.Pid, Role: expect.Role, Property: p, Holds: holds, Got: got, Want: want})
	}
	sandboxSide := expect.Role == RoleSandbox || expect.Role == RoleStub

	// tier: the process that stands for the replica is what the tier says.
	if tier, how := observedTier(r, expect.Role); expect.Role != RoleStub && expect.Role != RoleProcess {
		add(PropTier, tier == expect.Tier, fmt.Sprintf("%s (%s)", tier, how), expect.Tier)
	}

	hostRoot := slices.Contains(r.UID.all(), 0) || slices.Contains(r.GID.all(), 0) ||
		mapsHostID(r.UIDMap, 0) || mapsHostID(r.GIDMap, 0)
	add(PropNotHostRoot, !hostRoot, fmt.Sprintf("uid %d gid %d, uid_map %s", r.UID.Effective, r.GID.Effective, mapString(r.UIDMap)),
		"no host uid/gid 0, none mapped")

	got := fmt.Sprintf("uid_map %s gid_map %s, uid %d", mapString(r.UIDMap), mapString(r.GIDMap), r.UID.Effective)
	if sandboxSide {
		ok := mapsOnly(r.UIDMap, expect.Range.HostUID, expect.Range.Size) && mapsOnly(r.GIDMap, expect.Range.HostGID, expect.Range.Size) &&
			!slices.ContainsFunc(r.UID.all(), func(id uint32) bool { return id != Nobody && !inRange(id, expect.Range.HostUID, expect.Range.Size) })
		add(PropUIDMap, ok && len(r.UIDMap) > 0, got, fmt.Sprintf("only nobody (%d) or the tenant's %s", Nobody, rangeString(expect.Range)))
	} else {
		want := []IDMap{{0, expect.Range.HostUID, expect.Range.Size}}
		wantG := []IDMap{{0, expect.Range.HostGID, expect.Range.Size}}
		ok := slices.Equal(r.UIDMap, want) && slices.Equal(r.GIDMap, wantG) &&
			!slices.ContainsFunc(r.UID.all(), func(id uint32) bool { return !inRange(id, expect.Range.HostUID, expect.Range.Size) })
		wantS := "uid_map and gid_map " + mapString(want) + " (the tenant's range only)"
		if expect.Range == (uidrange.Range{}) {
			// No tenant range known: ask for one valid tenant block.
			ok = len(r.UIDMap) == 1 && len(r.GIDMap) == 1 && rangeOf(r).Validate() == nil
			wantS = fmt.Sprintf("one tenant range 0→N+M, N ≥ %d", uidrange.Base)
		}
		add(PropUIDMap, ok, got, wantS)
	}

	required := requiredNamespaces(expect.Role)
	for _, t := range expect.Namespaces {
		if !slices.Contains(required, t) {
			required = append(required, t)
		}
	}
	slices.Sort(required)
	var shared, private []string
	for _, t := range required {
		i := slices.IndexFunc(r.Namespaces, func(n Namespace) bool { return n.Type == t })
		if i < 0 || !r.Namespaces[i].Private {
			shared = append(shared, t)
		} else {
			private = append(private, t)
		}
	}
	nsGot := "own " + strings.Join(private, ",")
	if len(shared) > 0 {
		nsGot += "; host's " + strings.Join(shared, ",")
	}
	add(PropNamespaces, len(shared) == 0, nsGot, "own "+strings.Join(required, ","))

	allowed, _ := CapSetOf(append(slices.Clone(expect.Capabilities), roleCapabilities(expect.Role)...)...)
	c := r.Caps
	held := c.Effective | c.Permitted | c.Ambient | c.Inheritable
	if !sandboxSide {
		// The sentry keeps a full bounding set: no_new_privs and its user
		// namespace bound it instead. Everyone else is bounded.
		held |= c.Bounding
	}
	capsOK := held&^allowed == 0
	if len(roleCapabilities(expect.Role)) > 0 && held != 0 {
		// runsc's own capabilities only count inside a user namespace of the
		// process's own that maps no host root.
		capsOK = capsOK && isPrivate(r, "user") && !hostRoot
	}
	capWant := "none"
	if allowed != 0 {
		capWant = "at most " + strings.Join(allowed.Names(), ",")
		if len(roleCapabilities(expect.Role)) > 0 {
			capWant += " in an own user namespace"
		}
	}
	add(PropCapabilities, capsOK, fmt.Sprintf("CapEff %s CapBnd %s", c.Effective, c.Bounding), capWant)

	add(PropNoNewPrivs, r.NoNewPrivs == 1, fmt.Sprint(r.NoNewPrivs), "1")
	add(PropSeccomp, r.Seccomp == 2 && r.SeccompFilters > 0, fmt.Sprintf("%d, filters %d", r.Seccomp, r.SeccompFilters), "2 (filter)")
	if expect.Role == RoleSandbox {
		on := slices.ContainsFunc(r.Args, func(a string) bool { return a == "--oci-seccomp" || a == "--oci-seccomp=true" })
		got := "sentry without --oci-seccomp"
		if on {
			got = "sentry with --oci-seccomp"
		}
		add(PropWorkloadSeccomp, on, got, "--oci-seccomp (the spec's filter on the workload's system calls)")
	}
	add(PropReadonlyRoot, r.Root.ReadOnly, mountString(r.Root), "read-only /")
	var hm []string
	for _, m := range r.HostMounts {
		hm = append(hm, m.Point+" from "+m.FSType+":"+m.Root)
	}
	add(PropNoHostMounts, len(r.HostMounts) == 0, orNone(strings.Join(hm, "; ")), "none")

	res := r.Resources
	add(PropMemory, limitOK(res.MemoryLimit, expect.MemoryLimit), limitString(res.MemoryLimit), wantLimit(expect.MemoryLimit))
	if expect.NoSwap {
		add(PropNoSwap, res.MemorySwapLimit != Unlimited && res.MemorySwapLimit == res.MemoryLimit,
			"memory+swap "+limitString(res.MemorySwapLimit), "memory+swap = memory")
	}
	add(PropPids, limitOK(res.PidsLimit, expect.PidsLimit), limitString(res.PidsLimit), wantLimit(expect.PidsLimit))
	cpuOK := limitOK(res.CPUQuota, expect.CPUQuota) && (expect.CPUPeriod == 0 || res.CPUPeriod == expect.CPUPeriod)
	add(PropCPU, cpuOK, fmt.Sprintf("%s/%dus", limitString(res.CPUQuota), res.CPUPeriod), cpuWant(expect))
	return out
}

// observedTier says which tier a process shows: gVisor's sentry and gofer
// are the sandbox tier; a process on the host kernel with its own user
// namespace is the container tier.
func observedTier(r Report, role string) (tier, how string) {
	switch {
	case r.Command == "runsc-sandbox" || r.Command == "runsc-gofer":
		return TierSandbox, "gVisor " + strings.TrimPrefix(r.Command, "runsc-") + " process"
	case strings.HasPrefix(r.Command, "runsc"):
		return "unknown", "runsc helper " + r.Command
	case isPrivate(r, "user"):
		return TierContainer, "host kernel, own user namespace"
	}
	return "none", "host kernel, host user namespace"
}

func isPrivate(r Report, t string) bool {
	i := slices.IndexFunc(r.Namespaces, func(n Namespace) bool { return n.Type == t })
	return i >= 0 && r.Namespaces[i].Private
}

// mapsOnly reports whether every mapped host ID is nobody or in
// [base, base+size).
func mapsOnly(maps []IDMap, base, size uint32) bool {
	for _, m := range maps {
		nobody := m.HostID == Nobody && m.Size == 1
		if !nobody && !(inRange(m.HostID, base, size) && uint64(m.HostID)+uint64(m.Size) <= uint64(base)+uint64(size)) {
			return false
		}
	}
	return true
}

func inRange(id, base, size uint32) bool {
	return size > 0 && id >= base && uint64(id) < uint64(base)+uint64(size)
}

// rangeOf is the tenant range a process's single-line maps describe.
func rangeOf(r Report) uidrange.Range {
	if len(r.UIDMap) != 1 || len(r.GIDMap) != 1 || r.UIDMap[0].ContainerID != 0 || r.UIDMap[0].Size != r.GIDMap[0].Size {
		return uidrange.Range{}
	}
	return uidrange.Range{HostUID: r.UIDMap[0].HostID, HostGID: r.GIDMap[0].HostID, Size: r.UIDMap[0].Size}
}

func rangeString(r uidrange.Range) string {
	if r == (uidrange.Range{}) {
		return "range (unknown)"
	}
	return fmt.Sprintf("range %d+%d", r.HostUID, r.Size)
}

func mapString(maps []IDMap) string {
	if len(maps) == 0 {
		return "(none)"
	}
	s := make([]string, len(maps))
	for i, m := range maps {
		s[i] = m.String()
	}
	return strings.Join(s, ",")
}

func mountString(m Mount) string {
	mode := "rw"
	if m.ReadOnly {
		mode = "ro"
	}
	return fmt.Sprintf("%s %s:%s %s", m.Point, m.FSType, m.Root, mode)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// limitOK: a limit must be set, and equal to want when want is known.
func limitOK(got, want int64) bool {
	if got == 0 || got == Unlimited {
		return false
	}
	return want <= 0 || got == want
}

func limitString(v int64) string {
	switch v {
	case 0:
		return "unknown"
	case Unlimited:
		return "unlimited"
	}
	return fmt.Sprint(v)
}

func wantLimit(v int64) string {
	if v <= 0 {
		return "a limit"
	}
	return fmt.Sprint(v)
}

func cpuWant(e Expectation) string {
	if e.CPUQuota <= 0 {
		return "a quota"
	}
	return fmt.Sprintf("%d/%dus", e.CPUQuota, e.CPUPeriod)
}
