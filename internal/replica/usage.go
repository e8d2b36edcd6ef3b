package replica

import (
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// Usage is what a replica uses now, read from its cgroup (the sandbox
// tier's sentry and gofer count: they live in the replica's cgroup).
type Usage struct {
	// CPU is the CPU time used since the cgroup was made.
	CPU time.Duration
	// Memory is the cgroup's memory usage in bytes (page cache included,
	// as the kernel counts it against the limit).
	Memory int64
	// PIDs is the number of tasks.
	PIDs int64
	// At is when it was read.
	At time.Time
}

// Usage reads replica id's cgroup, on cgroup v1 and v2 alike
// (containerd/cgroups).
func (n *Node) Usage(id string) (Usage, error) {
	rec, err := n.record(id)
	if err != nil {
		return Usage{}, err
	}
	path := fmt.Sprintf("%s/%s/%s", n.cgroups, rec.Spec.Tenant, id)
	u := Usage{At: time.Now()}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return Usage{}, fmt.Errorf("replica %s: cgroup: %w", id, err)
		}
		st, err := m.Stat()
		if err != nil {
			return Usage{}, fmt.Errorf("replica %s: cgroup stats: %w", id, err)
		}
		if st.CPU != nil {
			u.CPU = time.Duration(st.CPU.UsageUsec) * time.Microsecond
		}
		if st.Memory != nil {
			u.Memory = int64(st.Memory.Usage)
		}
		if st.Pids != nil {
			u.PIDs = int64(st.Pids.Current)
		}
		return u, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		return Usage{}, fmt.Errorf("replica %s: cgroup: %w", id, err)
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Usage{}, fmt.Errorf("replica %s: cgroup stats: %w", id, err)
	}
	if st.CPU != nil && st.CPU.Usage != nil {
		u.CPU = time.Duration(st.CPU.Usage.Total)
	}
	if st.Memory != nil && st.Memory.Usage != nil {
		u.Memory = int64(st.Memory.Usage.Usage)
	}
	if st.Pids != nil {
		u.PIDs = int64(st.Pids.Current)
	}
	return u, nil
}
