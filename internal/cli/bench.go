package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/scheduler/gen"
)

// Goals of issue 3 for the placement benchmark, printed with the figures.
const (
	goalPlacementsPerSecond = 5000 // at 5,000 nodes with spread
	goalAbovePct            = 10
	goalBytesPerUnit        = 1024 // per node+replica
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench [placement|runtime|api|admission|replicas|network|noisy|volume]",
		Short: "Run the benchmark suite",
		Long: `Without a subcommand, runs every benchmark with its defaults, one after
the other: placement (throughput and quality, side by side with a naive
first fit), runtime (start latency per tier side by side with the raw runc
and runsc, idle memory), api (applies/s and p99 against rung up on
loopback), admission (indexed OSV scan side by side with a linear
baseline) and replicas (apply to healthy for many replicas, exec round
trips side by side with the raw runtimes), network (TCP throughput and
round trips between replicas side by side with a raw veth pair), noisy (a
neighbour's p99 beside a CPU hog, with and without the noisy-neighbour
ladder; the monitor's overhead) and volume (I/O inside a replica side by
side with the host on the same file system). Each prints the date and
machine it ran on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var failed []string
			for _, sub := range cmd.Commands() {
				if sub.RunE == nil || sub.Hidden || sub.Name() == "help" {
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\n### rung bench %s\n\n", sub.Name())
				sub.SetContext(cmd.Context())
				if err := sub.RunE(sub, nil); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "rung bench %s: %v\n", sub.Name(), err)
					failed = append(failed, sub.Name())
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("benchmarks failed: %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.AddCommand(newBenchPlacementCmd())
	cmd.AddCommand(newBenchRuntimeCmd())
	cmd.AddCommand(newBenchAPICmd())
	cmd.AddCommand(newBenchAdmissionCmd())
	cmd.AddCommand(newBenchReplicasCmd())
	cmd.AddCommand(newBenchNetworkCmd())
	cmd.AddCommand(newBenchNoisyCmd())
	cmd.AddCommand(newBenchVolumeCmd()) // benchvolume.go
	return cmd
}

// benchPlacementFlags are the flags of `rung bench placement`.
type benchPlacementFlags struct {
	nodes    []int
	replicas int
	tenants  int
	seed     int64
	runs     int
}

func newBenchPlacementCmd() *cobra.Command {
	var f benchPlacementFlags
	cmd := &cobra.Command{
		Use:   "placement",
		Short: "Placement throughput and quality on a generated datacenter",
		Long: `Generates a datacenter (5 datacenters of 20 racks, hosts of 64 cores and
256Gi running container, sandbox and vm) and tenants whose workloads of 2–10
replicas each ask for at least 2 datacenters, at most 2 replicas per rack and
1 per host; plans it and prints, per node count: placements per second,
physical hosts used against the lower bound max over resources of
ceil(Σ(request + tier overhead) / host capacity), memory per node+replica,
and a naive first-fit placement (no tenancy, spread only) of the same
replicas as a peer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.replicas < 1 || f.tenants < 1 || f.runs < 1 {
				return withCode(ExitInvalid, fmt.Errorf("--replicas, --tenants and --runs must be at least 1"))
			}
			for _, n := range f.nodes {
				if n < 1 {
					return withCode(ExitInvalid, fmt.Errorf("--nodes %d: must be at least 1", n))
				}
			}
			out := cmd.OutOrStdout()
			printMachine(out, time.Now())
			fmt.Fprintf(out, "problem: %d replicas of %d tenants; spread datacenter minDomains 2, rack maxPerDomain 2, host maxPerDomain 1; seed %d; best of %d run(s)\n\n",
				f.replicas, f.tenants, f.seed, f.runs)
			var rows []bruteforce.Figures
			for _, n := range f.nodes {
				fig, err := bruteforce.Benchmark(gen.Cluster(n, f.replicas, f.tenants, f.seed), f.runs)
				if err != nil {
					return fmt.Errorf("bench placement, %d nodes: %w", n, err)
				}
				rows = append(rows, fig)
			}
			printFigures(out, rows)
			for _, r := range rows {
				if r.Violations > 0 {
					return fmt.Errorf("bench placement, %d nodes: the plan breaks %d hard constraints (scheduler bug)", r.Nodes, r.Violations)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntSliceVar(&f.nodes, "nodes", []int{500, 5000}, "node counts to benchmark (comma-separated)")
	cmd.Flags().IntVar(&f.replicas, "replicas", 10_000, "replicas to place")
	cmd.Flags().IntVar(&f.tenants, "tenants", 50, "tenants owning the workloads")
	cmd.Flags().Int64Var(&f.seed, "seed", 1, "generator seed")
	cmd.Flags().IntVar(&f.runs, "runs", 3, "plans per node count; the fastest counts")
	return cmd
}

// printMachine prints the date and what the figures were measured on.
func printMachine(w io.Writer, now time.Time) {
	fmt.Fprintf(w, "rung bench placement, %s\n", now.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPU(s), %s, %s/%s, %s\n", runtime.NumCPU(), cpuModel("/proc/cpuinfo"), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// cpuModel returns the first "model name" of a cpuinfo file, or "unknown CPU".
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// printFigures prints one row per node count, then the goals.
func printFigures(w io.Writer, rows []bruteforce.Figures) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "NODES\tREPLICAS\tPLACED\tPLACEMENTS/S\tHOSTS\tLOWER BOUND\tABOVE\tTENANCY BOUND\tABOVE\tPEAK B/UNIT\tALLOC B/UNIT\tFIRST-FIT HOSTS\tVS FIRST FIT\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%d\t%d\t%.1f%%\t%d\t%.1f%%\t%.0f\t%.0f\t%d\t%.1f× slower\t\n",
			r.Nodes, r.Replicas, r.Placed, r.PlacementsPerSecond(), r.HostsUsed, r.LowerBound, r.AbovePct(), r.TenancyBound, r.AboveTenancyPct(),
			r.PeakPerUnit(), r.AllocPerUnit(), r.FirstFitHosts, r.VersusFirstFit())
	}
	tw.Flush()
	fmt.Fprintf(w, "\ngoals (issue 3): ≥ %d placements/s at 5,000 nodes, ≤ %d%% hosts above the lower bound, ≤ %d B per node+replica\n",
		goalPlacementsPerSecond, goalAbovePct, goalBytesPerUnit)
	fmt.Fprintln(w, "unit: one node or replica; peak: largest heap growth during a plan (sampled every ms, garbage included); alloc: bytes a plan allocates")
	fmt.Fprintln(w, "lower bound: max over cpu and memory of ceil(Σ(request + tier overhead) / host capacity); first fit: no tenancy, spread only")
	fmt.Fprintln(w, "tenancy bound: the same, plus the hosts that restricted and dedicated tenants may share with nobody (see bruteforce.Quality)")
}
