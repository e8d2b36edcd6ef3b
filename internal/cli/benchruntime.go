package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/verify/bench"
)

// newBenchRuntimeCmd is `rung bench runtime`: start-to-exit latency and
// idle memory per tier, through rung and through the raw runtime, in one
// run.
func newBenchRuntimeCmd() *cobra.Command {
	var (
		iterations, idle int
		tiers            []string
		platform, dir    string
		output           string
		allowEmulated    bool
	)
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "Start latency and idle memory per tier, rung next to the raw runtime",
		Long: `For the vm tier (--tiers vm), boots a busybox replica N times through rung's
vm driver and N times with the raw qemu-system-x86_64 command line on the
same kernel, initramfs and disk, interleaved, and prints boot-to-exec (the
VMM launched → the workload runs in the guest) and QEMU's resident memory
(goal: rung ≤ 1.1× raw). Without KVM it needs --allow-emulated-vm.

For each tier (container: runc, sandbox: runsc), runs /bin/true in a hardened
busybox replica N times through rung's driver (bundle.New, then create,
start, wait, delete) and N times with the bare runtime on the same bundle
(runc run / runsc run), interleaved, and prints the median and 90th
percentile of each, their ratio and the difference, against the goal of
issue 4 (rung adds at most 10% or 5 ms). Then starts K idle replicas per
tier and prints their host memory per replica (PSS and RSS summed over the
replica's host processes, and the cgroup's usage). Needs root, runc, runsc
and busybox-static.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if iterations < 1 || idle < 0 {
				return withCode(ExitInvalid, errors.New("--iterations must be at least 1 and --idle at least 0"))
			}
			if output != "text" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: use text or json", output))
			}
			var ociTiers []string
			vm := false
			for _, t := range tiers {
				switch t {
				case bench.TierContainer, bench.TierSandbox:
					ociTiers = append(ociTiers, t)
				case "vm":
					vm = true
				default:
					return withCode(ExitInvalid, fmt.Errorf("--tiers %q: use container, sandbox and/or vm", t))
				}
			}
			ctx := cmd.Context()
			if vm {
				if err := microvm.KVMUsable(); err != nil && !allowEmulated {
					return withCode(ExitInvalid, fmt.Errorf("--tiers vm: %v; --%s measures it under TCG emulation", err, allowEmulatedVMFlag))
				}
			}
			if len(ociTiers) == 0 {
				return benchVM(cmd, iterations, allowEmulated, output)
			}
			tiers = ociTiers
			b, err := bench.New(ctx, bench.Config{Dir: dir, Platform: platform}, tiers...)
			if err != nil {
				return err
			}
			defer b.Close()
			errw := cmd.ErrOrStderr()
			res, err := b.Measure(ctx, bench.Options{
				Tiers: tiers, Iterations: iterations, Idle: idle,
				Progress: func(tier, path string, i int, d time.Duration) {
					if output == "text" && isTerminal(errw) {
						fmt.Fprintf(errw, "\r%s %s %d/%d: %v   ", tier, path, i+1, iterations, d.Round(time.Millisecond))
					}
				},
			})
			if output == "text" && isTerminal(errw) {
				fmt.Fprint(errw, "\r\033[K")
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printBenchRuntime(cmd.OutOrStdout(), res)
			if vm {
				return benchVM(cmd, iterations, allowEmulated, output)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&iterations, "iterations", "n", 20, "runs of /bin/true per tier and path")
	f.IntVar(&idle, "idle", 5, "idle replicas per tier for the memory figure (0: skip)")
	f.StringSliceVar(&tiers, "tiers", []string{bench.TierContainer, bench.TierSandbox}, "tiers to measure")
	f.StringVar(&platform, "platform", "ptrace", "runsc --platform")
	f.StringVar(&dir, "dir", "", "work directory for bundles and runtime state (default: a new temporary directory)")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	f.BoolVar(&allowEmulated, allowEmulatedVMFlag, false, "measure the vm tier under TCG when KVM is missing (not a security boundary)")
	return cmd
}

// printBenchRuntime writes the result as the README's tables.
func printBenchRuntime(w io.Writer, r bench.Result) {
	m := r.Machine
	fmt.Fprintf(w, "rung bench runtime, %s\n", r.Date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %d CPU(s), %s, kernel %s, %s, load %s\n", m.CPUs, m.Model, m.Kernel, m.Go, m.Load)
	for _, rt := range m.Runtimes {
		fmt.Fprintf(w, "  %s\n", rt)
	}
	fmt.Fprintf(w, "\nstart-to-exit of /bin/true, %d runs per path, interleaved (goal: rung ≤ raw +10%% or +%v)\n",
		r.Iterations, bench.GoalOverhead)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tRUNG MEDIAN\tRUNG P90\tRAW MEDIAN\tRAW P90\tRATIO\tOVERHEAD\tGOAL")
	for _, l := range r.Latency {
		goal := "met"
		if !l.MeetsGoal {
			goal = "missed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\n", l.Tier, benchMs(l.Rung.Median), benchMs(l.Rung.P90),
			benchMs(l.Raw.Median), benchMs(l.Raw.P90), l.Ratio, benchMs(l.Overhead), goal)
	}
	tw.Flush()
	if len(r.Memory) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmemory per idle replica (sleep), averaged over %d replica(s) per tier\n", r.Memory[0].Replicas)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tHOST PROCESSES\tPSS\tRSS\tCGROUP")
	for _, mem := range r.Memory {
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%s\t%s\n", mem.Tier, mem.Processes, benchMiB(mem.PSS), benchMiB(mem.RSS), benchMiB(mem.Cgroup))
	}
	tw.Flush()
}

func benchMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func benchMiB(b int64) string { return fmt.Sprintf("%.1fMi", float64(b)/(1<<20)) }
