package microvm

import (
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroup is a VM's cgroup: the VMM and everything it runs, limited to the
// guest's memory plus the VMM's overhead, the replica's CPU, and a PIDs
// cap for QEMU's threads. cgroup v1 and v2 alike (containerd/cgroups).
type cgroup struct {
	path string
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
}

func newCgroup(path string, l Limits) (*cgroup, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: the bundle has no cgroups path", ErrInvalidConfig)
	}
	mem, swap := l.CgroupMem, l.CgroupMem // no swap: the guest's memory stays in RAM
	res := specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem, Swap: &swap},
		Pids:   &specs.LinuxPids{Limit: &l.PIDs},
	}
	// The CPU quota is set by limitCPU once the guest booted: the boot
	// (rung's kernel and init, before the workload is handed over) runs
	// unthrottled, as the raw VMM does, bounded by the boot timeout.
	c := &cgroup{path: path}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(&res))
		if err != nil {
			return nil, fmt.Errorf("vm cgroup %s: %w", path, err)
		}
		c.v2 = m
		return c, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &res)
	if err != nil {
		return nil, fmt.Errorf("vm cgroup %s: %w", path, err)
	}
	c.v1 = cg
	return c, nil
}

func (c *cgroup) add(pid int) error {
	var err error
	if c.v2 != nil {
		err = c.v2.AddProc(uint64(pid))
	} else {
		err = c.v1.Add(cgroup1.Process{Pid: pid})
	}
	if err != nil {
		return fmt.Errorf("vm cgroup %s: add %d: %w", c.path, pid, err)
	}
	return nil
}

// removeCgroup deletes the cgroup at path once its processes are gone; a
// VMM that just died may still hold it for a moment (a zombie until its
// reaper waits for it), so it retries for a while.
func removeCgroup(path string) {
	for range 50 {
		if tryRemoveCgroup(path) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryRemoveCgroup reports whether the cgroup at path is gone.
func tryRemoveCgroup(path string) bool {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return true
		}
		return m.Delete() == nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return true
	}
	return cg.Delete() == nil
}

// limitCPU applies the replica's CPU quota, before the guest gets its
// workload.
func (c *cgroup) limitCPU(l Limits) error {
	if l.CPUQuota <= 0 {
		return nil
	}
	q, p := l.CPUQuota, l.CPUPeriod
	res := specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &p}}
	var err error
	if c.v2 != nil {
		err = c.v2.Update(cgroup2.ToResources(&res))
	} else {
		err = c.v1.Update(&res)
	}
	if err != nil {
		return fmt.Errorf("vm cgroup %s: cpu quota: %w", c.path, err)
	}
	return nil
}
