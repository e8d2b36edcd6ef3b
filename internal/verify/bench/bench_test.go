package bench

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatsOf(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, c := range []struct {
		in   []time.Duration
		want Stats
	}{
		{nil, Stats{}},
		{ms(7), Stats{N: 1, Median: 7 * time.Millisecond, P90: 7 * time.Millisecond, Min: 7 * time.Millisecond}},
		{ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), Stats{N: 10, Median: 5 * time.Millisecond, P90: 9 * time.Millisecond, Min: time.Millisecond}},
		{ms(3, 1, 2), Stats{N: 3, Median: 2 * time.Millisecond, P90: 3 * time.Millisecond, Min: time.Millisecond}},
	} {
		if diff := cmp.Diff(c.want, StatsOf(c.in)); diff != "" {
			t.Errorf("StatsOf(%v) (-want +got):\n%s", c.in, diff)
		}
	}
}

// newBench prepares the tiers or skips: the benchmark needs root and the
// runtimes (CI has both).
func newBench(tb testing.TB, tiers ...string) *Bench {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: starts user-namespaced containers with cgroup limits")
	}
	b, err := New(tb.Context(), Config{}, tiers...)
	if errors.Is(err, ErrUnavailable) {
		tb.Skipf("not installed: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// TestMeasure runs the whole benchmark once, small, and checks its shape
// (not its speed: the machine is shared).
func TestMeasure(t *testing.T) {
	b := newBench(t, TierContainer, TierSandbox)
	res, err := b.Measure(t.Context(), Options{Tiers: []string{TierContainer, TierSandbox}, Iterations: 2, Idle: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if len(res.Latency) != 2 || len(res.Memory) != 2 || res.Machine.CPUs < 1 || len(res.Machine.Runtimes) != 2 {
		t.Fatalf("result %+v: want 2 tiers of latency and memory", res)
	}
	for _, l := range res.Latency {
		if l.Rung.N != 2 || l.Raw.N != 2 || l.Rung.Median <= 0 || l.Raw.Median <= 0 || l.Ratio <= 0 {
			t.Errorf("%s latency %+v: want 2 samples of each path", l.Tier, l)
		}
	}
	for _, m := range res.Memory {
		if m.Replicas != 2 || m.PSS <= 0 || m.RSS < m.PSS || m.Cgroup <= 0 || m.Processes < 1 {
			t.Errorf("%s memory %+v", m.Tier, m)
		}
	}
	if m := res.Memory[1]; m.Processes < 3 {
		t.Errorf("sandbox replica has %v host processes, want sentry, stubs and gofer", m.Processes)
	}
}

func benchmarkStart(b *testing.B, tier string, raw bool) {
	bn := newBench(b, tier)
	run := bn.StartRung
	if raw {
		run = bn.StartRaw
	}
	if _, err := run(b.Context(), tier); err != nil { // warm-up
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := run(b.Context(), tier); err != nil {
			b.Fatal(err)
		}
	}
}

// The start-to-exit latency of /bin/true, side by side:
// go test -bench Start ./internal/verify/bench
func BenchmarkStartRuncRung(b *testing.B)  { benchmarkStart(b, TierContainer, false) }
func BenchmarkStartRuncRaw(b *testing.B)   { benchmarkStart(b, TierContainer, true) }
func BenchmarkStartRunscRung(b *testing.B) { benchmarkStart(b, TierSandbox, false) }
func BenchmarkStartRunscRaw(b *testing.B)  { benchmarkStart(b, TierSandbox, true) }
