package scheduler_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/scheduler/gen"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// The benchmark problem of issue 3: 10,000 replicas of 50 tenants with a
// 3-level hard spread (datacenter > rack > host), on 500 or 5,000 hosts.
const (
	benchReplicas = 10_000
	benchTenants  = 50
	benchSeed     = 1
)

// BenchmarkPlan500 plans the benchmark problem on 500 hosts.
func BenchmarkPlan500(b *testing.B) { benchmarkPlan(b, 500) }

// BenchmarkPlan5000 plans the benchmark problem on 5,000 hosts.
func BenchmarkPlan5000(b *testing.B) { benchmarkPlan(b, 5000) }

// benchmarkPlan times NewProblem+Plan and reports, besides ns/op:
//
//	placements/s     replicas placed per second
//	hosts            physical hosts the plan uses
//	lower-bound      max over cpu and memory of ceil(Σ(request + tier overhead) / host capacity)
//	%above           how far hosts is above lower-bound
//	alloc-B/unit     bytes allocated per op (MemStats.TotalAlloc) per node+replica
//	peak-B/unit      peak heap growth during one plan (MemStats.HeapAlloc, sampled
//	                 every millisecond, garbage included) per node+replica
//	x-firstfit       plan time ÷ naive first-fit time (no tenancy, spread only)
//	firstfit-hosts   hosts the first fit uses
//	x-check          plan time ÷ bruteforce.Check time verifying the plan
func benchmarkPlan(b *testing.B, nodes int) {
	set := gen.Cluster(nodes, benchReplicas, benchTenants, benchSeed)
	rules := &tenancy.Rules{}
	var res *scheduler.Result
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ops := 0
	for b.Loop() {
		res = planOnce(b, set, rules)
		ops++
	}
	runtime.ReadMemStats(&after)
	perOp := b.Elapsed() / time.Duration(ops)
	units := float64(nodes + benchReplicas)

	b.ReportMetric(float64(len(res.Placements))/perOp.Seconds(), "placements/s")
	q, err := bruteforce.Measure(set, res)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(q.HostsUsed), "hosts")
	b.ReportMetric(float64(q.LowerBound), "lower-bound")
	b.ReportMetric(q.AbovePct(), "%above")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(ops)/units, "alloc-B/unit")
	b.ReportMetric(float64(peakHeap(func() { planOnce(b, set, rules) }))/units, "peak-B/unit")
	if len(res.Unplaced) > 0 {
		b.Errorf("%d replicas unplaced, e.g. %v", len(res.Unplaced), res.Unplaced[0])
	}

	ff, ffTime := timed(func() *scheduler.Result {
		r, err := bruteforce.FirstFit(set)
		if err != nil {
			b.Fatal(err)
		}
		return r
	})
	fq, err := bruteforce.Measure(set, ff)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(perOp)/float64(ffTime), "x-firstfit")
	b.ReportMetric(float64(fq.HostsUsed), "firstfit-hosts")

	var violations []string
	_, checkTime := timed(func() *scheduler.Result { violations = bruteforce.Check(set, rules, res); return nil })
	b.ReportMetric(float64(perOp)/float64(checkTime), "x-check")
	if len(violations) > 0 {
		b.Errorf("plan violates %d hard constraints, e.g. %s", len(violations), violations[0])
	}
}

func planOnce(b *testing.B, set *v1.Set, rules *tenancy.Rules) *scheduler.Result {
	p, err := scheduler.NewProblem(set, rules, topology.DefaultRuntimes)
	if err != nil {
		b.Fatal(err)
	}
	res, err := scheduler.Plan(p, scheduler.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

// timed runs f three times and returns its last result and fastest time.
func timed(f func() *scheduler.Result) (*scheduler.Result, time.Duration) {
	var res *scheduler.Result
	best := time.Duration(1<<63 - 1)
	for range 3 {
		start := time.Now()
		res = f()
		best = min(best, time.Since(start))
	}
	return res, best
}

// peakHeap runs f and returns the largest growth of the heap (live and
// not yet collected) seen while it ran, sampled every millisecond.
func peakHeap(f func()) uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapAlloc, ms.HeapAlloc
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				var s runtime.MemStats
				runtime.ReadMemStats(&s)
				peak = max(peak, s.HeapAlloc)
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	runtime.ReadMemStats(&ms)
	return max(peak, ms.HeapAlloc) - base
}
