package microvm

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/runtime"
)

// writeRecord saves a replica's state file (state.json in its directory):
// what a later process of the driver, or rung verify, knows of it.
func (d *Driver) writeRecord(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(d.vmDir(r.ID), ".state.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.vmDir(r.ID), "state.json"))
}

func (d *Driver) readRecord(id string) (record, error) {
	var r record
	if !validID(id) {
		return r, fmt.Errorf("vm %q: %w", id, runtime.ErrInvalidID)
	}
	b, err := os.ReadFile(filepath.Join(d.vmDir(id), "state.json"))
	if err != nil {
		return r, fmt.Errorf("vm %s: %w", id, runtime.ErrNotFound)
	}
	if err := json.Unmarshal(b, &r); err != nil || r.ID != id {
		return r, fmt.Errorf("vm %s: corrupt state", id)
	}
	return r, nil
}

// Records lists the replicas this driver's directory holds (rung verify).
func (d *Driver) Records() []string {
	ents, _ := os.ReadDir(filepath.Join(d.opt.Dir, "vms"))
	var out []string
	for _, e := range ents {
		if _, err := d.readRecord(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Running reports a record's VMM PID when it still runs (for rung verify,
// which is another process than the agent).
func (d *Driver) Running(id string) (int, bool) {
	rec, err := d.readRecord(id)
	if err != nil || rec.Pid == 0 || rec.Start == 0 || startTime(rec.Pid) != rec.Start {
		return 0, false
	}
	return rec.Pid, true
}

// startTime reads a process's start time (field 22 of /proc/PID/stat), 0
// when it is gone or a zombie (dead, waiting for a parent to reap it: a
// VMM whose agent died is re-parented to the host's init).
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	var t uint64
	fmt.Sscan(f[19], &t)
	return t
}

// hostIDs is the replica's user as the host sees it: through the bundle's
// user namespace mapping (the tenant's range). QEMU runs as it, never as
// root.
func hostIDs(s *specs.Spec) (uint32, uint32, error) {
	u := s.Process.User
	m := func(id uint32, maps []specs.LinuxIDMapping) (uint32, bool) {
		for _, x := range maps {
			if id >= x.ContainerID && id < x.ContainerID+x.Size {
				return x.HostID + id - x.ContainerID, true
			}
		}
		return 0, false
	}
	uid, ok1 := m(u.UID, s.Linux.UIDMappings)
	gid, ok2 := m(u.GID, s.Linux.GIDMappings)
	if !ok1 || !ok2 || uid == 0 || gid == 0 {
		return 0, 0, fmt.Errorf("%w: the replica's user %d:%d has no unprivileged host id in the bundle's user namespace mapping", ErrInvalidConfig, u.UID, u.GID)
	}
	return uid, gid, nil
}

// limitsOf sizes the guest and its cgroup from the bundle's resources: the
// guest gets the replica's memory limit as RAM and its CPU limit as vCPUs;
// the cgroup holds the guest plus the VMM's overhead.
func limitsOf(s *specs.Spec, emulated bool) Limits {
	l := Limits{GuestMiB: DefaultMemoryMiB, CPUs: 1, PIDs: 128}
	r := s.Linux.Resources
	if r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		l.GuestMiB = int(*r.Memory.Limit >> 20)
	}
	if l.GuestMiB < MinGuestMiB {
		l.GuestMiB = MinGuestMiB
	}
	if r != nil && r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Quota > 0 && *r.CPU.Period > 0 {
		l.CPUQuota, l.CPUPeriod = *r.CPU.Quota, *r.CPU.Period
		l.CPUs = int(math.Ceil(float64(l.CPUQuota) / float64(l.CPUPeriod)))
	}
	over := int64(OverheadKVM)
	if emulated {
		over = OverheadTCG
	}
	l.CgroupMem = int64(l.GuestMiB)<<20 + over
	return l
}

// validID is runtime's rule for IDs: they name paths.
func validID(id string) bool { return runtime.ValidID(id) }
