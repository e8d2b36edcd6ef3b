package cli

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"rung.dev/rung/internal/noisy/bench"
)

func TestBenchNoisyTable(t *testing.T) {
	res := bench.Result{
		Alone:          bench.Latency{P50: 8 * time.Millisecond, P99: 20 * time.Millisecond, Max: 30 * time.Millisecond, N: 1000},
		Hog:            bench.Latency{P50: 20 * time.Millisecond, P99: 100 * time.Millisecond, Max: 120 * time.Millisecond, N: 1000},
		Ladder:         bench.Latency{P50: 9 * time.Millisecond, P99: 25 * time.Millisecond, Max: 40 * time.Millisecond, N: 1000},
		ThrottledAfter: 1500 * time.Millisecond, Steps: []string{"batch-hog-0 throttle: using 1900m of a 100m request"},
		Replicas: 100, Ticks: 50, TickCPU: 4 * time.Millisecond, StatsCPU: 100 * time.Microsecond, Interval: 2 * time.Second, CorePct: 0.205,
		LoadBefore: "1.00 1.00 1.00", LoadAfter: "2.00 1.00 1.00", CPUs: 2,
	}
	var b bytes.Buffer
	printBenchNoisy(&b, res)
	got := b.String()
	t.Logf("\n%s", got)
	for _, re := range []string{
		`(?m)· 2 CPUs · load 1.00 1.00 1.00 → 2.00 1.00 1.00$`,
		`(?m)^\| alone \| 8.0ms \| 20.0ms \| 30.0ms \| 1000 \|$`,
		`(?m)^\| beside the hog, no action \| 20.0ms \| 100.0ms \| 120.0ms \| 1000 \|$`,
		`(?m)^\| beside the hog, ladder \| 9.0ms \| 25.0ms \| 40.0ms \| 1000 \|$`,
		`(?m)^ladder p99 / alone p99 = 1.25× \(goal ≤ 1.5×: meets\); hog throttled 1.5s after the monitor started$`,
		`(?m)^  step: batch-hog-0 throttle`,
		`(?m)^monitor at 100 replicas: 4ms per tick \+ 100µs per heartbeat sampling = 0.205% of a core at a 2s interval \(goal ≤ 1%: meets; 50 ticks\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("output lacks %s", re)
		}
	}
	res.Ladder.P99, res.CorePct = 40*time.Millisecond, 1.5
	b.Reset()
	printBenchNoisy(&b, res)
	for _, re := range []string{`2.00× \(goal ≤ 1.5×: misses\)`, `1.500% of a core at a 2s interval \(goal ≤ 1%: misses`} {
		if !regexp.MustCompile(re).MatchString(b.String()) {
			t.Errorf("output lacks %s", re)
		}
	}
}

func TestBenchNoisyFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "5"}, {"--replicas", "0"}, {"--ticks", "0"}, {"-o", "yaml"}, {"--bogus"}} {
		if code, _, _ := runSubcommand(t, newBenchNoisyCmd(), args...); code != ExitInvalid {
			t.Errorf("%v: exit %d, want %d", args, code, ExitInvalid)
		}
	}
}
