package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/verify"
)

// Goal of issue 4: rung adds at most 10% or at most 5 ms to the raw
// runtime's start-to-exit latency.
const (
	GoalRatio    = 1.10
	GoalOverhead = 5 * time.Millisecond
)

// Stats summarises latency samples.
type Stats struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median"`
	P90    time.Duration `json:"p90"`
	Min    time.Duration `json:"min"`
}

// StatsOf returns the nearest-rank median, 90th percentile and minimum.
func StatsOf(samples []time.Duration) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Stats{N: len(s), Median: rank(0.5), P90: rank(0.9), Min: s[0]}
}

// Latency is one tier's start-to-exit latency through rung and raw.
type Latency struct {
	Tier string `json:"tier"`
	Rung Stats  `json:"rung"`
	Raw  Stats  `json:"raw"`
	// Ratio is rung's median over raw's; Overhead their difference.
	Ratio    float64       `json:"ratio"`
	Overhead time.Duration `json:"overhead"`
	// MeetsGoal: Ratio ≤ GoalRatio or Overhead ≤ GoalOverhead.
	MeetsGoal bool `json:"meetsGoal"`
}

// Memory is what an idle replica of a tier costs on the host.
type Memory struct {
	Tier     string `json:"tier"`
	Replicas int    `json:"replicas"`
	// Processes is the number of host processes per replica.
	Processes float64 `json:"processes"`
	// PSS and RSS are per replica, summed over its host processes
	// (proportional set size shares pages between replicas; RSS counts
	// shared pages in full). Cgroup is the replica cgroup's memory usage,
	// page cache included.
	PSS    int64 `json:"pss"`
	RSS    int64 `json:"rss"`
	Cgroup int64 `json:"cgroup"`
}

// Machine is what the figures were measured on.
type Machine struct {
	CPUs     int      `json:"cpus"`
	Model    string   `json:"model"`
	Kernel   string   `json:"kernel"`
	Go       string   `json:"go"`
	Runtimes []string `json:"runtimes"`
	Load     string   `json:"load"`
}

// Result is the output of Measure.
type Result struct {
	Date       time.Time `json:"date"`
	Machine    Machine   `json:"machine"`
	Iterations int       `json:"iterations"`
	Latency    []Latency `json:"latency"`
	Memory     []Memory  `json:"memory"`
}

// Options are what Measure does.
type Options struct {
	// Tiers to measure, in order.
	Tiers []string
	// Iterations of each path per tier (rung and raw interleaved, order
	// alternating), after one warm-up of each.
	Iterations int
	// Idle is how many idle (sleep) replicas per tier the memory figure
	// is averaged over; 0 skips it.
	Idle int
	// Progress, if set, is called after each sample.
	Progress func(tier, path string, i int, d time.Duration)
}

// Measure runs the benchmark.
func (b *Bench) Measure(ctx context.Context, o Options) (Result, error) {
	res := Result{Date: time.Now().UTC(), Iterations: o.Iterations, Machine: machine()}
	for _, t := range o.Tiers {
		res.Machine.Runtimes = append(res.Machine.Runtimes, b.Version(t))
	}
	for _, t := range o.Tiers {
		lat, err := b.latency(ctx, t, o)
		if err != nil {
			return res, err
		}
		res.Latency = append(res.Latency, lat)
	}
	if o.Idle > 0 {
		for _, t := range o.Tiers {
			m, err := b.IdleMemory(ctx, t, o.Idle)
			if err != nil {
				return res, err
			}
			res.Memory = append(res.Memory, m)
		}
	}
	res.Machine.Load = loadavg()
	return res, nil
}

func (b *Bench) latency(ctx context.Context, tier string, o Options) (Latency, error) {
	paths := []struct {
		name string
		run  func(context.Context, string) (time.Duration, error)
	}{{"rung", b.StartRung}, {"raw", b.StartRaw}}
	// Warm-up: page cache, cgroup hierarchy, the runtimes' own caches.
	for _, p := range paths {
		if _, err := p.run(ctx, tier); err != nil {
			return Latency{}, err
		}
	}
	samples := map[string][]time.Duration{}
	for i := range o.Iterations {
		order := paths
		if i%2 == 1 {
			order = []struct {
				name string
				run  func(context.Context, string) (time.Duration, error)
			}{paths[1], paths[0]}
		}
		for _, p := range order {
			d, err := p.run(ctx, tier)
			if err != nil {
				return Latency{}, err
			}
			samples[p.name] = append(samples[p.name], d)
			if o.Progress != nil {
				o.Progress(tier, p.name, i, d)
			}
		}
	}
	l := Latency{Tier: tier, Rung: StatsOf(samples["rung"]), Raw: StatsOf(samples["raw"])}
	if l.Raw.Median > 0 {
		l.Ratio = float64(l.Rung.Median) / float64(l.Raw.Median)
	}
	l.Overhead = l.Rung.Median - l.Raw.Median
	l.MeetsGoal = l.Ratio <= GoalRatio || l.Overhead <= GoalOverhead
	return l, nil
}

// IdleMemory starts k replicas of `sleep` through rung's driver, each with
// its own bundle (sharing the rootfs) and cgroup, and averages their host
// memory; then removes them.
func (b *Bench) IdleMemory(ctx context.Context, tier string, k int) (Memory, error) {
	tb, err := b.tier(tier)
	if err != nil {
		return Memory{}, err
	}
	var ids, dirs []string
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, id := range ids {
			_ = tb.driver.Delete(dctx, id)
		}
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}()
	for range k {
		id := b.nextID("idle")
		dir := filepath.Join(filepath.Dir(tb.bundle), id)
		if err := os.Mkdir(dir, 0o711); err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tier, err)
		}
		dirs = append(dirs, dir)
		s, err := bundle.New(
			bundle.WithUserNamespace(benchRange()),
			bundle.WithProcess([]string{"/bin/sleep", "3600"}, nil, "/"),
			bundle.WithRootfs(tb.rootfs),
			bundle.WithResources(1000, 256<<20, 256),
			bundle.WithCgroupsPath("/rung-bench/"+id),
		)
		if err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tier, err)
		}
		if err := bundle.Write(dir, s); err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tier, err)
		}
		if err := tb.driver.Create(ctx, id, dir, runtime.IO{Stdout: b.devNull, Stderr: b.devNull}); err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tier, err)
		}
		ids = append(ids, id)
		if err := tb.driver.Start(ctx, id); err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tier, err)
		}
	}
	// Let the replicas reach their idle state (sleep exec'd, the sentry's
	// start-up garbage collected): wait until two readings a second apart
	// agree within 1%, at most 15 seconds.
	var m Memory
	for i := 0; i < 15; i++ {
		next, err := b.readMemory(ctx, tb, ids)
		if err != nil {
			return Memory{}, err
		}
		stable := m.PSS > 0 && abs(next.PSS-m.PSS)*100 <= m.PSS
		m = next
		if stable {
			break
		}
		select {
		case <-ctx.Done():
			return Memory{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return m, nil
}

func (b *Bench) readMemory(ctx context.Context, tb *tierBench, ids []string) (Memory, error) {
	m := Memory{Tier: tb.tier, Replicas: len(ids)}
	var procs int
	for _, id := range ids {
		hps, err := tb.driver.HostProcesses(ctx, id)
		if err != nil {
			return Memory{}, fmt.Errorf("bench %s idle: %w", tb.tier, err)
		}
		for i, hp := range hps {
			pss, rss := processMemory(hp.Pid)
			m.PSS += pss
			m.RSS += rss
			procs++
			if i == 0 {
				r, err := verify.Inspect(ctx, hp.Pid)
				if err != nil {
					return Memory{}, fmt.Errorf("bench %s idle: %w", tb.tier, err)
				}
				m.Cgroup += r.Resources.MemoryUsage
			}
		}
	}
	n := int64(len(ids))
	m.PSS, m.RSS, m.Cgroup = m.PSS/n, m.RSS/n, m.Cgroup/n
	m.Processes = float64(procs) / float64(n)
	return m, nil
}

// processMemory returns a process's PSS (smaps_rollup) and RSS (status) in
// bytes; 0 for a process that is gone.
func processMemory(pid int) (pss, rss int64) {
	p := "/proc/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(p + "/smaps_rollup"); err == nil {
		pss = kbField(b, "Pss:")
	}
	if b, err := os.ReadFile(p + "/status"); err == nil {
		rss = kbField(b, "VmRSS:")
	}
	return pss, rss
}

// kbField returns the "Name:   N kB" field in bytes.
func kbField(b []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == name {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func machine() Machine {
	m := Machine{CPUs: goruntime.NumCPU(), Model: "unknown CPU", Go: goruntime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadavg is the 1, 5 and 15 minute load average, to judge how loaded the
// machine was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ThisMachine describes this machine for a benchmark's report.
func ThisMachine(context.Context) Machine {
	m := machine()
	m.Load = loadavg()
	return m
}
