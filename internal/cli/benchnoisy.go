package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/noisy/bench"
)

// Goals of issue 17, printed with the figures.
const (
	goalNoisyRatio   = 1.5 // neighbour p99 with the ladder ≤ 1.5× alone
	goalMonitorPct   = 1.0 // monitor ≤ 1% of a core at 100 replicas
	benchNoisyPhases = "alone, hog with no action, hog with the ladder"
)

// newBenchNoisyCmd is `rung bench noisy`: the neighbour's p99 alone, beside
// a hog, beside the hog with the ladder, and the monitor's overhead.
func newBenchNoisyCmd() *cobra.Command {
	var (
		requests, replicas, ticks int
		dir, output               string
	)
	cmd := &cobra.Command{
		Use:   "noisy",
		Short: "A neighbour's p99 beside a CPU hog, with and without the noisy-neighbour ladder; the monitor's overhead",
		Long: `Runs a small HTTP server (busybox httpd) in a runc replica and measures its
response times from inside its network namespace, in one run: alone, beside
a CPU hog (a burstable replica requesting 100m with a limit of every CPU)
with no action, and beside the hog once the ladder (threshold 10%, hold 2,
interval 500ms) has throttled it to its request. Then measures the
monitor's CPU time (the thread's rusage around each tick, plus the
heartbeat's usage sampling) at --replicas cgroups, as a share of one core
at the default 2s interval. Goals (issue 17): ladder p99 ≤ 1.5× alone;
monitor ≤ 1% of a core at 100 replicas. Needs root, runc and busybox-static.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if requests < 10 || replicas < 1 || ticks < 1 {
				return withCode(ExitInvalid, errors.New("--requests must be at least 10, --replicas and --ticks at least 1"))
			}
			if output != "text" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text or json", output))
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "rung-bench-noisy-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				if err := os.Chmod(d, 0o711); err != nil {
					return err
				}
				dir = d
			}
			var log io.Writer
			if output == "text" {
				log = cmd.ErrOrStderr()
			}
			res, err := bench.Run(cmd.Context(), bench.Config{Dir: dir, Requests: requests, Replicas: replicas, Ticks: ticks, Log: log})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printBenchNoisy(cmd.OutOrStdout(), res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&requests, "requests", "n", 1000, "requests per latency phase")
	f.IntVar(&replicas, "replicas", 100, "cgroups the monitor watches in the overhead phase")
	f.IntVar(&ticks, "ticks", 50, "monitor ticks measured")
	f.StringVar(&dir, "dir", "", "data directory for the replicas (default: a new temporary directory)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// printBenchNoisy writes the result as the README's tables.
func printBenchNoisy(w io.Writer, r bench.Result) {
	fmt.Fprintf(w, "date %s · %d CPUs · load %s → %s\n\n", time.Now().UTC().Format(time.RFC3339), r.CPUs, r.LoadBefore, r.LoadAfter)
	fmt.Fprintf(w, "| neighbour (%s) | p50 | p99 | max | requests |\n|---|---|---|---|---|\n", benchNoisyPhases)
	for _, p := range []struct {
		name string
		l    bench.Latency
	}{{"alone", r.Alone}, {"beside the hog, no action", r.Hog}, {"beside the hog, ladder", r.Ladder}} {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d |\n", p.name, benchMs(p.l.P50), benchMs(p.l.P99), benchMs(p.l.Max), p.l.N)
	}
	verdict := "meets"
	if r.Ratio() > goalNoisyRatio {
		verdict = "misses"
	}
	fmt.Fprintf(w, "\nladder p99 / alone p99 = %.2f× (goal ≤ %.1f×: %s); hog throttled %s after the monitor started\n",
		r.Ratio(), goalNoisyRatio, verdict, r.ThrottledAfter.Round(time.Millisecond))
	fmt.Fprintf(w, "ladder window: requests from %s after the throttle step, for %s (only throttled periods of the hog)\n",
		r.LadderWindow.Round(time.Millisecond), r.LadderSpan.Round(time.Millisecond))
	for _, s := range r.Steps {
		fmt.Fprintf(w, "  step: %s\n", s)
	}
	verdict = "meets"
	if r.CorePct > goalMonitorPct {
		verdict = "misses"
	}
	fmt.Fprintf(w, "\nmonitor at %d replicas: %s per tick + %s per heartbeat sampling = %.3f%% of a core at a %s interval (goal ≤ %.0f%%: %s; %d ticks)\n",
		r.Replicas, r.TickCPU.Round(time.Microsecond), r.StatsCPU.Round(time.Microsecond), r.CorePct, r.Interval, goalMonitorPct, verdict, r.Ticks)
}
