// Package bench measures the noisy-neighbour ladder (DESIGN §12) on this
// machine with real runc replicas: a latency-sensitive server's response
// times alone, beside a CPU hog with no action, and beside the hog with
// the ladder; and the monitor's own CPU cost at many replicas, from real
// cgroups. It is `rung bench noisy`'s engine; nothing is asserted here.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/noisy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// Config sizes a run.
type Config struct {
	// Dir is the data directory for the replicas (a fresh one).
	Dir string
	// Requests is how many requests each latency phase sends (default 1000).
	Requests int
	// Replicas is the number of cgroups the monitor watches in the
	// overhead phase (default 100); Ticks its ticks (default 50).
	Replicas, Ticks int
	// Log gets progress lines (nil: none).
	Log io.Writer
}

// Latency summarizes one phase's response times.
type Latency struct {
	P50, P99, Max time.Duration
	N             int
}

// Result is one run.
type Result struct {
	Alone, Hog, Ladder Latency
	// ThrottledAfter is how long the ladder took to throttle the hog,
	// from the monitor's start; Steps what it did.
	ThrottledAfter time.Duration
	// LadderWindow is how long after the throttle step the ladder phase
	// starts sending requests (the window excludes the hog's last
	// unthrottled CFS period); LadderSpan how long the phase took.
	LadderWindow, LadderSpan time.Duration
	Steps                    []string
	// Monitor overhead: replicas watched, ticks, CPU time of the ticks and
	// of the heartbeat's usage sampling (Statuses), per tick, and the share
	// of one core at the default interval.
	Replicas          int
	Ticks             int
	TickCPU, StatsCPU time.Duration
	Interval          time.Duration
	CorePct           float64
	// Load is /proc/loadavg when the run started and ended.
	LoadBefore, LoadAfter string
	CPUs                  int
}

// Ratio is the ladder's p99 over the p99 alone.
func (r Result) Ratio() float64 {
	if r.Alone.P99 <= 0 {
		return 0
	}
	return float64(r.Ladder.P99) / float64(r.Alone.P99)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, format+"\n", args...)
	}
}

// Run runs the three latency phases, then the overhead phase.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Requests <= 0 {
		cfg.Requests = 1000
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 100
	}
	if cfg.Ticks <= 0 {
		cfg.Ticks = 50
	}
	res := Result{LoadBefore: loadavg(), CPUs: goruntime.NumCPU()}
	if err := latency(ctx, &cfg, &res); err != nil {
		return res, err
	}
	if err := overhead(ctx, &cfg, &res); err != nil {
		return res, err
	}
	res.LoadAfter = loadavg()
	return res, nil
}

// spin keeps n CPUs busy.
func spin(n int) string {
	return strings.Repeat("while :; do :; done & ", n-1) + "while :; do :; done"
}

func latency(ctx context.Context, cfg *Config, res *Result) error {
	n, err := replica.Open(ctx, cfg.Dir, replica.Options{})
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "rung-bench-noisy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := image.BusyboxRoot(root); err != nil {
		return fmt.Errorf("busybox image (install busybox-static): %w", err)
	}
	if _, err := n.Images().Pack(ctx, root, "busybox:latest", image.PackOptions{}); err != nil {
		return err
	}
	cpus := goruntime.NumCPU()
	pol := &noisy.Policy{Threshold: 0.1, Actions: []noisy.Action{noisy.Throttle, noisy.Report, noisy.Move},
		Interval: 500 * time.Millisecond, Hold: 2, Calm: 1 << 20}
	web := replica.Spec{ID: "shop-web-0", Tenant: "shop", Tier: tenancy.Container, Image: "busybox:latest",
		Args:      []string{"sh", "-c", "echo ok > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"},
		Resources: topology.Resources{MilliCPU: 1000, Memory: 32 << 20, PIDs: 64}, Noisy: pol}
	hog := replica.Spec{ID: "batch-hog-0", Tenant: "batch", Tier: tenancy.Container, Image: "busybox:latest",
		Args:      []string{"sh", "-c", spin(cpus)},
		Resources: topology.Resources{MilliCPU: 100, Memory: 32 << 20, PIDs: 64},
		Limits:    &topology.Resources{MilliCPU: int64(cpus) * 1000, Memory: 64 << 20}, Noisy: pol}
	var mu sync.Mutex
	desired := []replica.Spec{web}
	src := agent.SourceFunc(func(context.Context) ([]replica.Spec, error) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(desired), nil
	})
	a := agent.New(n, src, agent.Options{})
	defer func() {
		mu.Lock()
		desired = nil
		mu.Unlock()
		_, _ = agent.New(n, src, agent.Options{}).Reconcile(context.WithoutCancel(ctx))
	}()
	settle := func() error {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, err := a.Reconcile(ctx); err != nil {
				return err
			}
			all := true
			specs, _ := src.Desired(ctx)
			for _, s := range specs {
				if st, err := n.State(ctx, s.ID); err != nil || st.Status != runtime.Running {
					all = false
				}
			}
			if all {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("replicas not running after 2 minutes")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if err := settle(); err != nil {
		return err
	}
	st, err := n.State(ctx, web.ID)
	if err != nil {
		return err
	}
	get := func() (time.Duration, error) { return getIn(st.Pid, "127.0.0.1:8080") }
	// The server is up when it answers.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := get(); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("web replica does not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	phase := func(name string) (Latency, error) {
		cfg.logf("noisy: %s: %d requests", name, cfg.Requests)
		var ds []time.Duration
		for range cfg.Requests {
			d, err := get()
			if err != nil {
				return Latency{}, fmt.Errorf("%s: %w", name, err)
			}
			ds = append(ds, d)
		}
		return summarize(ds), nil
	}
	if res.Alone, err = phase("alone"); err != nil {
		return err
	}
	mu.Lock()
	desired = []replica.Spec{web, hog}
	mu.Unlock()
	if err := settle(); err != nil {
		return err
	}
	time.Sleep(time.Second) // let the hog spin up
	if res.Hog, err = phase("hog, no action"); err != nil {
		return err
	}
	// The ladder: the monitor runs at the policy's interval until the hog
	// is throttled.
	cfg.logf("noisy: ladder: waiting for the hog's throttle")
	start := time.Now()
	for done := false; !done; {
		for _, s := range a.MonitorOnce(ctx) {
			res.Steps = append(res.Steps, s.Replica+" "+s.Action+": "+s.Reason)
			if s.Replica == hog.ID && s.Action == "throttle" {
				done = true
			}
		}
		if time.Since(start) > 2*time.Minute {
			return errors.New("the ladder did not throttle the hog within 2 minutes")
		}
		if !done {
			time.Sleep(pol.Interval)
		}
	}
	res.ThrottledAfter = time.Since(start)
	// The quota applies from the hog's next CFS period (100ms); wait one
	// more so that the window holds only throttled periods.
	res.LadderWindow = 200 * time.Millisecond
	time.Sleep(res.LadderWindow)
	t0 := time.Now()
	if res.Ladder, err = phase("hog with the ladder"); err != nil {
		return err
	}
	res.LadderSpan = time.Since(t0)
	return nil
}

// getIn makes one HTTP request to addr from inside the network namespace
// of process pid (a replica's own: it has only loopback) and returns the
// time to the full response.
func getIn(pid int, addr string) (time.Duration, error) {
	type answer struct {
		d   time.Duration
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		// The thread enters the namespace and is never reused: it exits
		// with the goroutine (no UnlockOSThread).
		goruntime.LockOSThread()
		fd, err := unix.Open(filepath.Join("/proc", strconv.Itoa(pid), "ns/net"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- answer{err: fmt.Errorf("setns: %w", err)}
			return
		}
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil {
			ch <- answer{err: err}
			return
		}
		b, err := io.ReadAll(c)
		d := time.Since(t0)
		if err == nil && !strings.Contains(string(b), "ok") {
			err = fmt.Errorf("unexpected answer %q", truncate(string(b), 80))
		}
		ch <- answer{d: d, err: err}
	}()
	a := <-ch
	return a.d, a.err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return Latency{P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1], N: len(ds)}
}

// cgroupNode stands for a node of cgroup-only replicas (a sleeping task
// in each): the agent's monitor reads them as it reads real replicas'.
type cgroupNode struct {
	parent string
	specs  []replica.Spec
}

func (c *cgroupNode) Records() ([]replica.Record, error) {
	out := make([]replica.Record, len(c.specs))
	for i, s := range c.specs {
		out[i] = replica.Record{Spec: s}
	}
	return out, nil
}
func (c *cgroupNode) Leftovers() ([]string, error) { return nil, nil }
func (c *cgroupNode) State(context.Context, string) (runtime.State, error) {
	return runtime.State{Status: runtime.Running}, nil
}
func (c *cgroupNode) Start(context.Context, replica.Spec) error { return nil }
func (c *cgroupNode) Remove(context.Context, string) error      { return nil }
func (c *cgroupNode) path(tenant, id string) string             { return c.parent + "/" + tenant + "/" + id }
func (c *cgroupNode) UsageOf(tenant, id string) (replica.Usage, error) {
	return replica.NewCgroup(c.path(tenant, id)).Usage()
}
func (c *cgroupNode) CPUUsageOf(tenant, id string) (replica.Usage, error) {
	return replica.NewCgroup(c.path(tenant, id)).CPUUsage()
}
func (c *cgroupNode) SetCPU(tenant, id string, milli int64) error {
	return replica.NewCgroup(c.path(tenant, id)).SetCPU(milli)
}

// controllers are the cgroup v1 hierarchies the monitor reads.
var controllers = []string{"cpu", "cpuacct", "memory", "pids", "blkio"}

// overhead measures the monitor at cfg.Replicas cgroup-only replicas: the
// CPU time of its ticks and of the heartbeat's usage sampling, by the
// thread's rusage around each.
func overhead(ctx context.Context, cfg *Config, res *Result) error {
	parent := fmt.Sprintf("/rung-bench-noisy-%d", os.Getpid())
	unified := false
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		unified = true
	}
	dirs := func(rel string) []string {
		if unified {
			return []string{filepath.Join("/sys/fs/cgroup", rel)}
		}
		var out []string
		for _, c := range controllers {
			out = append(out, filepath.Join("/sys/fs/cgroup", c, rel))
		}
		return out
	}
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		return err
	}
	var made []string
	defer func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		for i := len(made) - 1; i >= 0; i-- {
			for range 50 {
				if err := os.Remove(made[i]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
	mk := func(rel string) error {
		for _, d := range dirs(rel) {
			if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
				return err
			}
			made = append(made, d)
		}
		return nil
	}
	if unified {
		_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu +memory +pids +io"), 0)
	}
	node := &cgroupNode{parent: parent}
	for _, rel := range []string{parent, parent + "/t"} {
		if err := mk(rel); err != nil {
			return err
		}
		if unified {
			_ = os.WriteFile(filepath.Join("/sys/fs/cgroup", rel, "cgroup.subtree_control"), []byte("+cpu +memory +pids +io"), 0)
		}
	}
	pol := &noisy.Policy{Threshold: 0.1, Actions: []noisy.Action{noisy.Throttle, noisy.Report, noisy.Move}}
	for i := range cfg.Replicas {
		id := fmt.Sprintf("t-w-%d", i)
		if err := mk(parent + "/t/" + id); err != nil {
			return err
		}
		node.specs = append(node.specs, replica.Spec{ID: id, Tenant: "t", Tier: tenancy.Container, Image: "none",
			Resources: topology.Resources{MilliCPU: 100}, Limits: &topology.Resources{MilliCPU: 200}, Noisy: pol})
	}
	// The sleeping task sits in the last cgroup (so its files are a
	// live cgroup's); the others are empty ones, read the same way.
	for _, d := range dirs(parent + "/t/" + node.specs[len(node.specs)-1].ID) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			return err
		}
	}
	src := agent.SourceFunc(func(context.Context) ([]replica.Spec, error) { return node.specs, nil })
	a := agent.New(node, src, agent.Options{})
	defer a.Close()
	if _, err := a.Reconcile(ctx); err != nil {
		return err
	}
	cfg.logf("noisy: monitor overhead: %d replicas, %d ticks", cfg.Replicas, cfg.Ticks)
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	var stats time.Duration
	for range cfg.Ticks {
		a.MonitorOnce(ctx)
		var r0, r1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &r0)
		_ = a.Statuses()
		_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &r1)
		stats += time.Duration(r1.Utime.Nano()-r0.Utime.Nano()) + time.Duration(r1.Stime.Nano()-r0.Stime.Nano())
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	cpu, ticks := a.MonitorCost()
	res.Replicas, res.Ticks = cfg.Replicas, ticks
	if ticks > 0 {
		res.TickCPU = cpu / time.Duration(ticks)
		res.StatsCPU = stats / time.Duration(ticks)
	}
	res.Interval = noisy.DefaultInterval
	res.CorePct = float64(res.TickCPU+res.StatsCPU) / float64(res.Interval) * 100
	return nil
}
