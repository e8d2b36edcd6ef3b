package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Cgroup is one cgroup of a process.
type Cgroup struct {
	// Controllers are the v1 hierarchy's controllers ("memory",
	// "cpu,cpuacct", "name=systemd"); empty for the v2 unified hierarchy.
	Controllers string `json:"controllers"`
	// Path is the cgroup path inside its hierarchy.
	Path string `json:"path"`
	// Dir is its directory on the host, "" when the hierarchy is not
	// mounted here.
	Dir string `json:"dir,omitempty"`
}

// Version is 2 for the unified hierarchy, else 1.
func (c Cgroup) Version() int {
	if c.Controllers == "" {
		return 2
	}
	return 1
}

func (c Cgroup) has(controller string) bool {
	return slices.Contains(strings.Split(c.Controllers, ","), controller)
}

// Resources are a cgroup's limits and counters. A limit is Unlimited when
// not set and 0 when its controller was not found; a counter is 0 when
// unknown.
type Resources struct {
	// Version is the cgroup version the memory limit was read from (1 or 2;
	// 0 when no memory controller was found).
	Version int `json:"version"`
	// MemoryLimit is the memory limit in bytes; MemorySwapLimit the limit of
	// memory plus swap (equal to MemoryLimit: no swap).
	MemoryLimit     int64 `json:"memoryLimit"`
	MemorySwapLimit int64 `json:"memorySwapLimit"`
	// PidsLimit is the maximum number of tasks (processes and threads).
	PidsLimit int64 `json:"pidsLimit"`
	// CPUQuota and CPUPeriod are the CFS bandwidth limit in microseconds.
	CPUQuota  int64 `json:"cpuQuota"`
	CPUPeriod int64 `json:"cpuPeriod"`

	// MemoryUsage is the current usage in bytes, PidsCurrent the current
	// number of tasks.
	MemoryUsage int64 `json:"memoryUsage"`
	PidsCurrent int64 `json:"pidsCurrent"`
	// MemoryFailcnt counts allocations that hit the limit (v1: memory or
	// memory+swap, whichever counted more; v2: the "max" event), OOMKills the
	// processes the OOM killer killed in the cgroup, PidsRefused the forks
	// refused at the PIDs limit.
	MemoryFailcnt int64 `json:"memoryFailcnt"`
	OOMKills      int64 `json:"oomKills"`
	PidsRefused   int64 `json:"pidsRefused"`
}

// cgroupMount is a mounted cgroup hierarchy on the inspecting host.
type cgroupMount struct {
	controllers []string // v1: from the super options; nil for v2
	v2          bool
	point, root string
}

// cgroupMounts lists the cgroup hierarchies mounted in the inspecting
// process's mount namespace (the host's, for rung).
func (h Host) cgroupMounts() ([]cgroupMount, error) {
	b, err := h.readFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	lines, err := parseMountinfo(b)
	if err != nil {
		return nil, err
	}
	var out []cgroupMount
	for _, m := range lines {
		switch m.FSType {
		case "cgroup2":
			out = append(out, cgroupMount{v2: true, point: m.Point, root: m.Root})
		case "cgroup":
			var ctrls []string
			for _, o := range m.superOpts {
				if slices.Contains(v1Controllers(), o) || strings.HasPrefix(o, "name=") {
					ctrls = append(ctrls, o)
				}
			}
			out = append(out, cgroupMount{controllers: ctrls, point: m.Point, root: m.Root})
		}
	}
	return out, nil
}

// v1Controllers are the cgroup v1 controller names, as they appear in a
// hierarchy's mount options.
func v1Controllers() []string {
	return []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb",
		"memory", "misc", "net_cls", "net_prio", "perf_event", "pids", "rdma"}
}

// dir returns the host directory of cgroup path p in hierarchy m, or "".
func (m cgroupMount) dir(p string) string {
	rel, ok := strings.CutPrefix(p, m.root)
	if !ok || (m.root != "/" && rel != "" && !strings.HasPrefix(rel, "/")) {
		return ""
	}
	return path.Join(m.point, rel)
}

// matches reports whether m is the hierarchy of a /proc/PID/cgroup line
// with these controllers.
func (m cgroupMount) matches(controllers string) bool {
	if controllers == "" {
		return m.v2
	}
	if m.v2 {
		return false
	}
	want := strings.Split(controllers, ",")
	return len(want) == len(m.controllers) && !slices.ContainsFunc(want, func(c string) bool {
		return !slices.Contains(m.controllers, c)
	})
}

// readCgroups sets Cgroups and Resources from /proc/PID/cgroup.
func (h Host) readCgroups(r *Report) error {
	b, err := h.readFile(procPath(r.Pid, "cgroup"))
	if err != nil {
		return err
	}
	mounts, err := h.cgroupMounts()
	if err != nil {
		return err
	}
	r.Cgroups = nil
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			return fmt.Errorf("cgroup line %q: %w", line, ErrMalformed)
		}
		c := Cgroup{Controllers: f[1], Path: f[2]}
		for _, m := range mounts {
			if m.matches(c.Controllers) {
				c.Dir = m.dir(c.Path)
				break
			}
		}
		r.Cgroups = append(r.Cgroups, c)
	}
	r.Resources, err = h.resources(r.Cgroups)
	return err
}

// CgroupResources reads the limits and counters of cgroup path p (absolute
// inside each hierarchy, as an OCI spec's cgroupsPath) when no process of
// it is left to inspect, e.g. after an OOM kill and before the runtime
// deletes the cgroup. A cgroup found in no hierarchy is ErrNoCgroup.
func (h Host) CgroupResources(ctx context.Context, p string) (Resources, error) {
	if err := ctx.Err(); err != nil {
		return Resources{}, err
	}
	mounts, err := h.cgroupMounts()
	if err != nil {
		return Resources{}, fmt.Errorf("cgroup %s: %w", p, err)
	}
	var cgs []Cgroup
	for _, m := range mounts {
		c := Cgroup{Controllers: strings.Join(m.controllers, ","), Path: p, Dir: m.dir(p)}
		if c.Dir == "" {
			continue
		}
		if _, err := h.readDir(c.Dir); err != nil {
			continue
		}
		cgs = append(cgs, c)
	}
	if len(cgs) == 0 {
		return Resources{}, fmt.Errorf("cgroup %s: %w", p, ErrNoCgroup)
	}
	res, err := h.resources(cgs)
	if err != nil {
		return Resources{}, fmt.Errorf("cgroup %s: %w", p, err)
	}
	return res, nil
}

// resources reads limits and counters: each controller from its v1
// hierarchy when it has one, else from the unified hierarchy.
func (h Host) resources(cgs []Cgroup) (Resources, error) {
	var res Resources
	v1 := func(ctrl string) string {
		for _, c := range cgs {
			if c.Version() == 1 && c.has(ctrl) && c.Dir != "" {
				return c.Dir
			}
		}
		return ""
	}
	v2 := ""
	for _, c := range cgs {
		if c.Version() == 2 && c.Dir != "" {
			v2 = c.Dir
		}
	}
	var errs []error
	read := func(dir, file string, dst *int64) {
		if v, err := h.readLimit(path.Join(dir, file)); err == nil {
			*dst = v
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	readKey := func(dir, file, key string, dst *int64) {
		if v, err := h.readKeyed(path.Join(dir, file), key); err == nil {
			*dst = v
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}

	if d := v1("memory"); d != "" {
		res.Version = 1
		read(d, "memory.limit_in_bytes", &res.MemoryLimit)
		read(d, "memory.memsw.limit_in_bytes", &res.MemorySwapLimit)
		read(d, "memory.usage_in_bytes", &res.MemoryUsage)
		// With memory+swap limited to memory, the memsw counter is the one
		// that counts: take the larger.
		var memFail, memswFail int64
		read(d, "memory.failcnt", &memFail)
		read(d, "memory.memsw.failcnt", &memswFail)
		res.MemoryFailcnt = max(memFail, memswFail)
		readKey(d, "memory.oom_control", "oom_kill", &res.OOMKills)
	} else if v2 != "" && h.exists(path.Join(v2, "memory.max")) {
		res.Version = 2
		read(v2, "memory.max", &res.MemoryLimit)
		var swap int64
		read(v2, "memory.swap.max", &swap)
		switch {
		case swap == Unlimited || res.MemoryLimit == Unlimited:
			res.MemorySwapLimit = Unlimited
		default:
			res.MemorySwapLimit = res.MemoryLimit + swap
		}
		read(v2, "memory.current", &res.MemoryUsage)
		readKey(v2, "memory.events", "max", &res.MemoryFailcnt)
		readKey(v2, "memory.events", "oom_kill", &res.OOMKills)
	}

	pidsDir := v1("pids")
	if pidsDir == "" && v2 != "" && h.exists(path.Join(v2, "pids.max")) {
		pidsDir = v2
	}
	if pidsDir != "" {
		read(pidsDir, "pids.max", &res.PidsLimit)
		read(pidsDir, "pids.current", &res.PidsCurrent)
		readKey(pidsDir, "pids.events", "max", &res.PidsRefused)
	}

	if d := v1("cpu"); d != "" {
		read(d, "cpu.cfs_quota_us", &res.CPUQuota)
		read(d, "cpu.cfs_period_us", &res.CPUPeriod)
	} else if v2 != "" && h.exists(path.Join(v2, "cpu.max")) {
		b, err := h.readFile(path.Join(v2, "cpu.max"))
		if err != nil {
			errs = append(errs, err)
		} else if f := strings.Fields(string(b)); len(f) == 2 {
			res.CPUQuota, _ = parseLimit(f[0])
			res.CPUPeriod, _ = parseLimit(f[1])
		}
	}
	return res, errors.Join(errs...)
}

func (h Host) exists(p string) bool {
	_, err := fs.Stat(h.fsys(), strings.TrimPrefix(p, "/"))
	return err == nil
}

// readLimit reads a one-number cgroup file; "max", -1 and the v1 page
// counter maximum are Unlimited.
func (h Host) readLimit(p string) (int64, error) {
	b, err := h.readFile(p)
	if err != nil {
		return 0, err
	}
	v, err := parseLimit(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p, err)
	}
	return v, nil
}

// unlimitedAbove: v1 reports "no limit" as the page counter maximum,
// 0x7ffffffffffff000 on 4 KiB pages; anything this large is no limit.
const unlimitedAbove = 1 << 62

func parseLimit(s string) (int64, error) {
	if s == "max" || s == "-1" {
		return Unlimited, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, ErrMalformed)
	}
	if v >= unlimitedAbove {
		return Unlimited, nil
	}
	return int64(v), nil
}

// readKeyed reads the value of "key N" in a flat-keyed cgroup file; a
// missing key is 0 (old kernels lack oom_kill).
func (h Host) readKeyed(p, key string) (int64, error) {
	b, err := h.readFile(p)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s %q: %w", p, key, v, ErrMalformed)
			}
			return n, nil
		}
	}
	return 0, nil
}
