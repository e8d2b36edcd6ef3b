package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"rung.dev/rung/internal/runtime"
)

// Properties and the role of a vm replica's proof.
const (
	// PropVMM: the replica's host process is the VMM (QEMU).
	PropVMM Property = "vmm"
	// PropGuestKernel: the guest runs its own kernel, not the host's (what
	// its init reported over the channel).
	PropGuestKernel Property = "guest-kernel"
	// RoleVMM is a vm replica's QEMU process.
	RoleVMM = "vmm"
)

// Emulated is the weakness of a vm replica run under TCG: the operator's
// test flag, never a security boundary.
const Emulated = "the VM is emulated (TCG, --allow-emulated-vm): no hardware virtualization boundary; " +
	"the guest kernel is a second kernel, but QEMU's emulator is the only thing between it and the host (tests only)"

// VM is what the vm driver's state says of one replica.
type VM struct {
	ID, Tenant, Bundle string
	// Pid is the VMM's PID while it runs, else 0.
	Pid int
	// UID is the host uid QEMU must run as (the replica's user).
	UID uint32
	// Memory, CPUQuota, CPUPeriod and Pids are the cgroup limits the
	// driver set (guest memory plus the VMM's overhead).
	Memory, CPUQuota, CPUPeriod, Pids int64
	// GuestKernel is the guest's "release version" as its init reported;
	// HostKernel the host's.
	GuestKernel, HostKernel string
	Emulated                bool
}

// VMReplica proves a vm replica from outside: its QEMU process, uid (not
// root, the replica's), capabilities, no_new_privs, seccomp (QEMU's
// -sandbox), namespaces, cgroup limits, and from inside through the
// channel: the guest's kernel differs from the host's.
func (h Host) VMReplica(ctx context.Context, v VM) (Replica, error) {
	out := Replica{ID: v.ID, Tenant: v.Tenant, Tier: "vm", Pid: v.Pid, Bundle: v.Bundle, Status: runtime.Running}
	if v.Pid == 0 {
		out.Status = runtime.Stopped
		return out, nil
	}
	r, err := h.Inspect(ctx, v.Pid)
	if err != nil {
		return out, err
	}
	out.Processes = []Process{{Role: RoleVMM, Report: r}}
	out.Resources = r.Resources
	add := func(p Property, holds bool, got, want string) {
		out.Findings = append(out.Findings, Finding{Pid: r.Pid, Role: RoleVMM, Property: p, Holds: holds, Got: got, Want: want})
	}
	add(PropVMM, strings.Contains(r.Command, "qemu-system"), r.Command, "qemu-system-*")
	ids := append(r.UID.all(), r.GID.all()...)
	add(PropNotHostRoot, !slices.Contains(ids, 0) && r.UID.Effective == v.UID && r.UID.Real == v.UID,
		fmt.Sprintf("uid %d gid %d", r.UID.Effective, r.GID.Effective), fmt.Sprintf("uid %d (the replica's user in the tenant's range), no 0", v.UID))
	add(PropCapabilities, r.Caps.Effective == 0 && r.Caps.Permitted == 0, r.Caps.Effective.String(), "none")
	add(PropNoNewPrivs, r.NoNewPrivs == 1, fmt.Sprint(r.NoNewPrivs), "1")
	add(PropSeccomp, r.Seccomp == 2, fmt.Sprint(r.Seccomp), "2 (QEMU's -sandbox filter)")
	var shared []string
	for _, t := range []string{"ipc", "mnt", "net", "pid", "uts"} {
		if !slices.ContainsFunc(r.Namespaces, func(n Namespace) bool { return n.Type == t && n.Private }) {
			shared = append(shared, t)
		}
	}
	add(PropNamespaces, len(shared) == 0, "shared: "+orNone(strings.Join(shared, ",")), "own ipc, mnt, net, pid, uts")
	res := r.Resources
	add(PropMemory, res.MemoryLimit == v.Memory, limitString(res.MemoryLimit), wantLimit(v.Memory)+" (guest memory + VMM overhead)")
	add(PropNoSwap, res.MemorySwapLimit == res.MemoryLimit || res.MemorySwapLimit == 0, limitString(res.MemorySwapLimit), "no swap")
	add(PropPids, res.PidsLimit == v.Pids, limitString(res.PidsLimit), wantLimit(v.Pids))
	if v.CPUQuota > 0 {
		add(PropCPU, res.CPUQuota == v.CPUQuota && res.CPUPeriod == v.CPUPeriod,
			fmt.Sprintf("%d/%d", res.CPUQuota, res.CPUPeriod), fmt.Sprintf("%d/%d", v.CPUQuota, v.CPUPeriod))
	}
	add(PropGuestKernel, v.GuestKernel != "" && v.GuestKernel != v.HostKernel, orNone(v.GuestKernel), "a kernel other than the host's ("+v.HostKernel+")")
	if v.Emulated {
		out.Weaknesses = append(out.Weaknesses, Emulated)
	}
	return out, nil
}
