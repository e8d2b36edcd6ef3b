package replica

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
)

// Usage is what a replica has used since its cgroup was made, read from
// the kernel (the sandbox tier's sentry and gofer count: they live in the
// replica's cgroup). Counters only grow; callers take differences.
type Usage struct {
	// CPU is the CPU time used.
	CPU time.Duration
	// Periods and Throttled count CFS periods with runnable tasks and
	// those in which the cgroup hit its quota; ThrottledTime is the time
	// its tasks spent throttled.
	Periods, Throttled int64
	ThrottledTime      time.Duration
	// Memory is the memory usage in bytes (page cache included, as the
	// kernel counts it against the limit); OOMKills counts the kernel's
	// OOM kills in the cgroup.
	Memory   int64
	OOMKills int64
	// PIDs is the number of tasks.
	PIDs int64
	// ReadBytes and WriteBytes are the block I/O done.
	ReadBytes, WriteBytes int64
	// Stall is the time some task of the cgroup waited for a CPU (PSI
	// "some" total); -1 where the kernel has no pressure per cgroup
	// (cgroup v1: see NodeStall).
	Stall time.Duration
	// At is when it was read.
	At time.Time
}

// ErrNoCgroup is returned when a replica's cgroup does not exist (it is
// not running, or it runs elsewhere).
var ErrNoCgroup = errors.New("replica cgroup not found")

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// Cgroup reads and sets one replica's cgroup, on v1 and v2. Sampling
// reads only the few files it needs, one read each: containerd/cgroups'
// Stat reads every file of every controller, which costs several percent
// of a core at a hundred replicas a node every few seconds.
type Cgroup struct {
	// Path is the cgroup's path below each hierarchy, /PARENT/TENANT/ID.
	Path    string
	unified bool
	buf     []byte
}

// NewCgroup returns the reader of cgroup path (/PARENT/TENANT/ID).
func NewCgroup(path string) *Cgroup {
	return &Cgroup{Path: path, unified: cgroups.Mode() == cgroups.Unified, buf: make([]byte, 4096)}
}

// CgroupPath is replica id's cgroup path on this node.
func (n *Node) CgroupPath(tenant, id string) string {
	return fmt.Sprintf("%s/%s/%s", n.cgroups, tenant, id)
}

// Usage reads replica id's cgroup.
func (n *Node) Usage(id string) (Usage, error) {
	rec, err := n.record(id)
	if err != nil {
		return Usage{}, err
	}
	return n.UsageOf(rec.Spec.Tenant, id)
}

// UsageOf reads the cgroup of replica id of tenant without reading its
// record (the agent knows the tenant).
func (n *Node) UsageOf(tenant, id string) (Usage, error) {
	return n.withCgroup(tenant, id, (*Cgroup).Usage)
}

// CPUUsageOf is UsageOf reading only the CPU files (usage, throttling,
// pressure): what the noisy-neighbour detector needs every tick.
func (n *Node) CPUUsageOf(tenant, id string) (Usage, error) {
	return n.withCgroup(tenant, id, (*Cgroup).CPUUsage)
}

// SetCPU sets the CFS quota of replica id of tenant to milli thousandths
// of a core: the noisy-neighbour ladder's throttle and release.
func (n *Node) SetCPU(tenant, id string, milli int64) error {
	_, err := n.withCgroup(tenant, id, func(c *Cgroup) (Usage, error) { return Usage{}, c.SetCPU(milli) })
	return err
}

// withCgroup applies f to replica id's cgroup, checking the names that
// make its path.
func (n *Node) withCgroup(tenant, id string, f func(*Cgroup) (Usage, error)) (Usage, error) {
	if !idRE.MatchString(id) || !idRE.MatchString(tenant) {
		return Usage{}, fmt.Errorf("%w: id %q of tenant %q", ErrInvalid, id, tenant)
	}
	u, err := f(NewCgroup(n.CgroupPath(tenant, id)))
	if err != nil {
		return Usage{}, fmt.Errorf("replica %s: %w", id, err)
	}
	return u, nil
}

// CPUUsage reads only the cgroup's CPU counters (CPU time, CFS periods
// and throttling, and pressure on v2); the other fields are zero.
func (c *Cgroup) CPUUsage() (Usage, error) {
	u := Usage{At: time.Now(), Stall: -1}
	if c.unified {
		b, err := c.read(filepath.Join(cgroupRoot, c.Path, "cpu.stat"))
		if err != nil {
			return u, err
		}
		c.cpuStatV2(&u, b)
		if b, err = c.read(filepath.Join(cgroupRoot, c.Path, "cpu.pressure")); err == nil {
			u.Stall = pressureTotal(b)
		}
		return u, nil
	}
	return u, c.cpuV1(&u)
}

func (c *Cgroup) cpuStatV2(u *Usage, b []byte) {
	u.CPU = time.Duration(field(b, "usage_usec")) * time.Microsecond
	u.Periods = field(b, "nr_periods")
	u.Throttled = field(b, "nr_throttled")
	u.ThrottledTime = time.Duration(field(b, "throttled_usec")) * time.Microsecond
}

func (c *Cgroup) cpuV1(u *Usage) error {
	b, err := c.read(filepath.Join(cgroupRoot, "cpuacct", c.Path, "cpuacct.usage"))
	if err != nil {
		return err
	}
	ns, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	u.CPU = time.Duration(ns)
	if b, err = c.read(filepath.Join(cgroupRoot, "cpu", c.Path, "cpu.stat")); err == nil {
		u.Periods = field(b, "nr_periods")
		u.Throttled = field(b, "nr_throttled")
		u.ThrottledTime = time.Duration(field(b, "throttled_time"))
	}
	return nil
}

// Usage reads the cgroup's counters.
func (c *Cgroup) Usage() (Usage, error) {
	u := Usage{At: time.Now(), Stall: -1}
	var err error
	if c.unified {
		err = c.usageV2(&u)
	} else {
		err = c.usageV1(&u)
	}
	return u, err
}

func (c *Cgroup) usageV1(u *Usage) error {
	p := func(ctrl, file string) string { return filepath.Join(cgroupRoot, ctrl, c.Path, file) }
	if err := c.cpuV1(u); err != nil {
		return err
	}
	b, err := c.read(p("memory", "memory.usage_in_bytes"))
	if err == nil {
		u.Memory, _ = strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	}
	if b, err = c.read(p("memory", "memory.oom_control")); err == nil {
		u.OOMKills = field(b, "oom_kill")
	}
	if b, err = c.read(p("pids", "pids.current")); err == nil {
		u.PIDs, _ = strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	}
	if b, err = c.read(p("blkio", "blkio.throttle.io_service_bytes")); err == nil {
		u.ReadBytes, u.WriteBytes = blkioBytes(b)
	}
	return nil
}

func (c *Cgroup) usageV2(u *Usage) error {
	p := func(file string) string { return filepath.Join(cgroupRoot, c.Path, file) }
	b, err := c.read(p("cpu.stat"))
	if err != nil {
		return err
	}
	c.cpuStatV2(u, b)
	if b, err = c.read(p("memory.current")); err == nil {
		u.Memory, _ = strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	}
	if b, err = c.read(p("memory.events")); err == nil {
		u.OOMKills = field(b, "oom_kill")
	}
	if b, err = c.read(p("pids.current")); err == nil {
		u.PIDs, _ = strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	}
	if b, err = c.read(p("io.stat")); err == nil {
		u.ReadBytes, u.WriteBytes = ioStatBytes(b)
	}
	if b, err = c.read(p("cpu.pressure")); err == nil {
		u.Stall = pressureTotal(b)
	}
	return nil
}

// SetCPU sets the cgroup's CFS quota to milli thousandths of a core over
// the period the runtime set (100ms).
func (c *Cgroup) SetCPU(milli int64) error {
	if milli < 10 {
		return fmt.Errorf("cpu %dm below 10m: %w", milli, ErrInvalid)
	}
	if c.unified {
		period := int64(100000)
		if b, err := c.read(filepath.Join(cgroupRoot, c.Path, "cpu.max")); err == nil {
			if f := bytes.Fields(b); len(f) == 2 {
				if v, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil && v > 0 {
					period = v
				}
			}
		}
		return c.write(filepath.Join(cgroupRoot, c.Path, "cpu.max"), fmt.Sprintf("%d %d", milli*period/1000, period))
	}
	dir := filepath.Join(cgroupRoot, "cpu", c.Path)
	period := int64(100000)
	if b, err := c.read(filepath.Join(dir, "cpu.cfs_period_us")); err == nil {
		if v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64); err == nil && v > 0 {
			period = v
		}
	}
	return c.write(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(milli*period/1000, 10))
}

// CPUQuota reads the cgroup's CFS quota in thousandths of a core (-1:
// none).
func (c *Cgroup) CPUQuota() (int64, error) {
	if c.unified {
		b, err := c.read(filepath.Join(cgroupRoot, c.Path, "cpu.max"))
		if err != nil {
			return 0, err
		}
		f := bytes.Fields(b)
		if len(f) != 2 || string(f[0]) == "max" {
			return -1, nil
		}
		q, _ := strconv.ParseInt(string(f[0]), 10, 64)
		p, _ := strconv.ParseInt(string(f[1]), 10, 64)
		if p <= 0 {
			return -1, nil
		}
		return q * 1000 / p, nil
	}
	dir := filepath.Join(cgroupRoot, "cpu", c.Path)
	b, err := c.read(filepath.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, err
	}
	q, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if q < 0 {
		return -1, nil
	}
	b, err = c.read(filepath.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, err
	}
	p, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if p <= 0 {
		return -1, nil
	}
	return q * 1000 / p, nil
}

// read reads a small file with one open, one read and one close, straight
// to the kernel (os.File would also try to register it with the poller),
// into c's buffer (valid until the next read). The kernel answers a
// cgroup file's read in one go.
func (c *Cgroup) read(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w: %s", ErrNoCgroup, path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer syscall.Close(fd)
	for {
		n, err := syscall.Read(fd, c.buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		return c.buf[:n], nil
	}
}

func (c *Cgroup) write(path, v string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNoCgroup, path)
		}
		return err
	}
	if _, err := f.WriteString(v); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// NodeStall is the time some task of this machine waited for a CPU (PSI
// "some" total of /proc/pressure/cpu); -1 when the kernel has no PSI.
func NodeStall() time.Duration {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	return pressureTotal(b)
}

// field returns the number after "name " at the start of a line of b.
func field(b []byte, name string) int64 {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) > len(name) && line[len(name)] == ' ' && string(line[:len(name)]) == name {
			v, _ := strconv.ParseInt(string(bytes.TrimSpace(line[len(name)+1:])), 10, 64)
			return v
		}
	}
	return 0
}

// pressureTotal reads the "some" line's total (µs) of a PSI file.
func pressureTotal(b []byte) time.Duration {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if !bytes.HasPrefix(line, []byte("some ")) {
			continue
		}
		for _, f := range bytes.Fields(line) {
			if v, ok := bytes.CutPrefix(f, []byte("total=")); ok {
				n, _ := strconv.ParseInt(string(v), 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
	}
	return -1
}

// blkioBytes sums the Read and Write lines of blkio.throttle.io_service_bytes
// ("8:0 Read 4096") over devices.
func blkioBytes(b []byte) (r, w int64) {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, _ := strconv.ParseInt(string(f[2]), 10, 64)
		switch string(f[1]) {
		case "Read":
			r += v
		case "Write":
			w += v
		}
	}
	return r, w
}

// ioStatBytes sums rbytes= and wbytes= of cgroup v2's io.stat over devices.
func ioStatBytes(b []byte) (r, w int64) {
	for _, f := range bytes.Fields(b) {
		if v, ok := bytes.CutPrefix(f, []byte("rbytes=")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			r += n
		} else if v, ok := bytes.CutPrefix(f, []byte("wbytes=")); ok {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			w += n
		}
	}
	return r, w
}
