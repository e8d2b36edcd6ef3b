package bruteforce

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// Figures are the placement benchmark's results for one problem: how fast
// the scheduler plans it, how well it packs, how much memory it takes, and
// the same problem solved by the naive peer.
type Figures struct {
	Nodes, Replicas int
	// Plan is the fastest NewProblem+Plan of the runs.
	Plan time.Duration
	Quality
	// AllocBytes is what one plan allocates (MemStats.TotalAlloc).
	AllocBytes uint64
	// PeakBytes is the largest heap growth (live objects and garbage not
	// yet collected) seen during one plan; see PeakHeap.
	PeakBytes uint64
	// FirstFit is the fastest naive first-fit placement of the same
	// replicas, and FirstFitHosts the physical hosts it uses.
	FirstFit      time.Duration
	FirstFitHosts int
	// Check is the time Check takes to verify the plan; Violations is
	// how many hard constraints the plan breaks (0 unless the scheduler
	// has a bug).
	Check      time.Duration
	Violations int
}

// PlacementsPerSecond is the scheduler's throughput.
func (f Figures) PlacementsPerSecond() float64 { return float64(f.Placed) / f.Plan.Seconds() }

// AllocPerUnit and PeakPerUnit are AllocBytes and PeakBytes per node+replica.
func (f Figures) AllocPerUnit() float64 { return float64(f.AllocBytes) / float64(f.Nodes+f.Replicas) }

// PeakPerUnit is PeakBytes per node+replica.
func (f Figures) PeakPerUnit() float64 { return float64(f.PeakBytes) / float64(f.Nodes+f.Replicas) }

// VersusFirstFit is how many times longer the scheduler takes than the first fit.
func (f Figures) VersusFirstFit() float64 { return float64(f.Plan) / float64(f.FirstFit) }

// Benchmark plans set runs times (at least once) with the default rules
// and returns the figures.
func Benchmark(set *v1.Set, runs int) (Figures, error) {
	var f Figures
	for _, t := range set.Topologies {
		f.Nodes += len(t.Spec.Nodes)
	}
	for _, w := range set.Workloads {
		n := 1
		if w.Spec.Replicas != nil {
			n = *w.Spec.Replicas
		}
		f.Replicas += n
	}
	rules := &tenancy.Rules{}
	var res *scheduler.Result
	var err error
	plan := func() {
		var p *scheduler.Problem
		if p, err = scheduler.NewProblem(set, rules, topology.DefaultRuntimes); err == nil {
			res, err = scheduler.Plan(p, scheduler.Options{})
		}
	}
	var before, after runtime.MemStats
	for i := range max(runs, 1) {
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		plan()
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil {
			return f, fmt.Errorf("plan: %w", err)
		}
		if i == 0 || took < f.Plan {
			f.Plan = took
		}
		f.AllocBytes = after.TotalAlloc - before.TotalAlloc
	}
	if f.Quality, err = Measure(set, res); err != nil {
		return f, err
	}
	f.PeakBytes = PeakHeap(plan)
	if err != nil {
		return f, fmt.Errorf("plan: %w", err)
	}

	var ff *scheduler.Result
	f.FirstFit = fastest(max(runs, 1), func() { ff, err = FirstFit(set) })
	if err != nil {
		return f, fmt.Errorf("first fit: %w", err)
	}
	fq, err := Measure(set, ff)
	if err != nil {
		return f, fmt.Errorf("first fit: %w", err)
	}
	f.FirstFitHosts = fq.HostsUsed

	f.Check = fastest(1, func() { f.Violations = len(Check(set, rules, res)) })
	return f, nil
}

// fastest runs f n times and returns the shortest time.
func fastest(n int, f func()) time.Duration {
	var best time.Duration
	for i := range n {
		start := time.Now()
		f()
		if took := time.Since(start); i == 0 || took < best {
			best = took
		}
	}
	return best
}

// PeakHeap runs f and returns the largest growth of the heap (live objects
// and garbage not yet collected, runtime/metrics
// /memory/classes/heap/objects:bytes) seen while it ran, sampled every
// millisecond without stopping the world.
func PeakHeap(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	runtime.GC()
	base := read()
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		s := []metrics.Sample{{Name: sample[0].Name}}
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				metrics.Read(s)
				if s[0].Value.Kind() == metrics.KindUint64 {
					peak = max(peak, s[0].Value.Uint64())
				}
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	return max(peak, read()) - base
}
