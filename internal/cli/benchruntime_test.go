package cli

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"rung.dev/rung/internal/verify/bench"
)

func TestBenchRuntimeTable(t *testing.T) {
	res := bench.Result{
		Date:       time.Date(2026, 11, 24, 5, 5, 0, 0, time.UTC),
		Machine:    bench.Machine{CPUs: 2, Model: "AMD EPYC", Kernel: "6.18", Go: "go1.26.8", Load: "2.0 2.0 2.0", Runtimes: []string{"runc: runc version 1.1.5"}},
		Iterations: 20,
		Latency: []bench.Latency{
			{Tier: "container", Rung: bench.Stats{N: 20, Median: 84 * time.Millisecond, P90: 90 * time.Millisecond},
				Raw: bench.Stats{N: 20, Median: 80 * time.Millisecond, P90: 88 * time.Millisecond}, Ratio: 1.05, Overhead: 4 * time.Millisecond, MeetsGoal: true},
			{Tier: "sandbox", Rung: bench.Stats{N: 20, Median: 390 * time.Millisecond, P90: 466 * time.Millisecond},
				Raw: bench.Stats{N: 20, Median: 257 * time.Millisecond, P90: 329 * time.Millisecond}, Ratio: 1.52, Overhead: 133 * time.Millisecond},
		},
		Memory: []bench.Memory{{Tier: "sandbox", Replicas: 5, Processes: 4, PSS: 14 << 20, RSS: 45 << 20, Cgroup: 11 << 20}},
	}
	var b bytes.Buffer
	printBenchRuntime(&b, res)
	got := b.String()
	t.Logf("\n%s", got)
	for _, re := range []string{
		`(?m)^rung bench runtime, 2026-11-24 05:05 UTC$`,
		`(?m)^machine: 2 CPU\(s\), AMD EPYC, kernel 6.18, go1.26.8, load 2.0 2.0 2.0$`,
		`(?m)^  runc: runc version 1.1.5$`,
		`(?m)^container +84.0ms +90.0ms +80.0ms +88.0ms +1.05 +4.0ms +met$`,
		`(?m)^sandbox +390.0ms +466.0ms +257.0ms +329.0ms +1.52 +133.0ms +missed$`,
		`(?m)^sandbox +4.0 +14.0Mi +45.0Mi +11.0Mi$`,
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("output lacks %s", re)
		}
	}
}

func TestBenchRuntimeFlags(t *testing.T) {
	for _, args := range [][]string{{"-n", "0"}, {"--idle", "-1"}, {"--tiers", "vm"}, {"-o", "yaml"}, {"--bogus"}} {
		if code, _, _ := runSubcommand(t, newBenchRuntimeCmd(), args...); code != ExitInvalid {
			t.Errorf("%v: exit %d, want %d", args, code, ExitInvalid)
		}
	}
}
