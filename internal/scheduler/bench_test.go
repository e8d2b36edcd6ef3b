package scheduler_test

import (
	"runtime"
	"testing"
	"time"

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
//	peak-B/unit      peak heap growth during one plan (heap objects, garbage
//	                 included, sampled every millisecond) per node+replica
//	x-firstfit       plan time ÷ naive first-fit time (no tenancy, spread only)
//	firstfit-hosts   hosts the first fit uses
//	x-check          plan time ÷ time of bruteforce.Check verifying the plan
func benchmarkPlan(b *testing.B, nodes int) {
	set := gen.Cluster(nodes, benchReplicas, benchTenants, benchSeed)
	rules := &tenancy.Rules{}
	var res *scheduler.Result
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ops := 0
	for b.Loop() {
		p, err := scheduler.NewProblem(set, rules, topology.DefaultRuntimes)
		if err != nil {
			b.Fatal(err)
		}
		if res, err = scheduler.Plan(p, scheduler.Options{}); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	runtime.ReadMemStats(&after)
	perOp := b.Elapsed() / time.Duration(ops)
	units := float64(nodes + benchReplicas)
	b.ReportMetric(float64(len(res.Placements))/perOp.Seconds(), "placements/s")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(ops)/units, "alloc-B/unit")
	if len(res.Unplaced) > 0 {
		b.Errorf("%d replicas unplaced, e.g. %v", len(res.Unplaced), res.Unplaced[0])
	}

	// The rest, untimed: quality, peak memory and the peers.
	f, err := bruteforce.Benchmark(set, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(f.HostsUsed), "hosts")
	b.ReportMetric(float64(f.LowerBound), "lower-bound")
	b.ReportMetric(f.AbovePct(), "%above")
	b.ReportMetric(f.PeakPerUnit(), "peak-B/unit")
	b.ReportMetric(float64(perOp)/float64(f.FirstFit), "x-firstfit")
	b.ReportMetric(float64(f.FirstFitHosts), "firstfit-hosts")
	b.ReportMetric(float64(perOp)/float64(f.Check), "x-check")
	if f.Violations > 0 {
		b.Errorf("plan violates %d hard constraints; run bruteforce.Check for the list", f.Violations)
	}
}
