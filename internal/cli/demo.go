package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/examples"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

func newDemoCmd() *cobra.Command {
	var (
		dataDir       string
		allowEmulated bool
		runsc         string
	)
	var run []string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Plan the shipped example tenants, then really run them on this machine",
		Long: `Plans every shipped example (university, public-cloud, four-questions) and
prints each decision. Then it runs the replicas of the examples named by
--run on this machine, each at its planned tier (runc for container, runsc
for sandbox), proves their isolation from the live processes, and removes
them. A replica whose tier can't run here (vm without a bootable guest) is
refused and reported, never run weaker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			dir, err := os.MkdirTemp("", "rung-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if err := os.CopyFS(dir, examples.FS); err != nil {
				return fmt.Errorf("unpack examples: %w", err)
			}
			plans := map[string]*scheduler.Result{}
			sets := map[string]*v1.Set{}
			for _, name := range examples.Names {
				fmt.Fprintf(out, "\n=== example %s: rung plan -f examples/%s\n\n", name, name)
				f := planFlags{files: []string{filepath.Join(dir, name)}}
				prob, notes, err := f.problem()
				if err != nil {
					return fmt.Errorf("example %s: %w", name, err)
				}
				res, err := scheduler.Plan(prob, scheduler.Options{})
				if err != nil {
					return fmt.Errorf("example %s: %w", name, err)
				}
				printPlan(out, res, notes)
				plans[name] = res
				if sets[name], err = v1.Load(filepath.Join(dir, name)); err != nil {
					return err
				}
			}
			if len(run) == 0 {
				return nil
			}
			return runDemo(cmd.Context(), out, dataDir, run, plans, sets, allowEmulated, runsc)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultImageDataDir, "data directory (images, bundles, runtime state)")
	cmd.Flags().BoolVar(&allowEmulated, allowEmulatedVMFlag, false, allowEmulatedVMHelp)
	cmd.Flags().StringVar(&runsc, runscFlag, defaultRunsc(), runscHelp)
	cmd.Flags().StringSliceVar(&run, "run", []string{"university", "public-cloud"}, "examples whose replicas to run for real (empty: plan only)")
	return cmd
}

// runDemo starts every planned replica of the named examples on this
// machine, verifies each from its live processes, and removes them.
func runDemo(ctx context.Context, out io.Writer, dataDir string, names []string, plans map[string]*scheduler.Result, sets map[string]*v1.Set, allowEmulated bool, runsc string) error {
	node, err := plugins.OpenNode(ctx, dataDir, replica.Options{VM: microvm.Options{AllowEmulated: allowEmulated}}, plugins.Config{Runsc: runsc})
	if err != nil {
		return err
	}
	if err := node.EnsureBusybox(ctx, "busybox:latest"); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n=== this machine's runtimes\n\n")
	avail := node.Availability(ctx)
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		a := avail[t]
		state := "available"
		if a.Available && node.VM().Emulated(ctx) && t == tenancy.VM {
			state = "available, " + a.Reason
		}
		if !a.Available {
			state = "UNAVAILABLE: " + a.Reason
		}
		fmt.Fprintf(out, "  %-9s %s %s\n", t, state, a.Version)
	}
	for _, name := range names {
		res, ok := plans[name]
		if !ok {
			return fmt.Errorf("--run %s: no such example (have %s)", name, strings.Join(examples.Names, ", "))
		}
		fmt.Fprintf(out, "\n=== running example %s on this machine (it stands in for every node of the plan)\n\n", name)
		if local := localPlan(out, sets[name], node.Runtimes(ctx)); local != nil {
			res = local
		}
		started, refused := startPlanned(ctx, out, node, res, sets[name])
		printVerify(ctx, out, node, started)
		for _, id := range started {
			if err := node.Remove(context.WithoutCancel(ctx), id); err != nil {
				fmt.Fprintf(out, "  remove %s: %v\n", id, err)
			}
		}
		fmt.Fprintf(out, "\n%d replica(s) ran and were removed; %d refused (fail closed)\n", len(started), refused)
	}
	return nil
}

// localPlan re-plans set as if every node ran what this machine's agent
// detects (DESIGN §4: a node's runtimes are what its agent detects), so
// the replicas that run here get tiers that can run here. It returns nil
// when the declared plan already fits.
func localPlan(out io.Writer, set *v1.Set, here tenancy.Set) *scheduler.Result {
	p, err := scheduler.ProblemOf(set, topology.DefaultRuntimes)
	if err != nil {
		return nil
	}
	if notes := p.Topology.Detected(func(string) (tenancy.Set, bool) { return here, true }); len(notes) == 0 {
		return nil
	}
	res, err := scheduler.Plan(p, scheduler.Options{})
	if err != nil {
		return nil
	}
	fmt.Fprintf(out, "re-planned with the runtimes this machine really has %s (a node offers only what its agent detects):\n\n", here)
	printPlan(out, res, nil)
	fmt.Fprintln(out)
	return res
}

func startPlanned(ctx context.Context, out io.Writer, node *replica.Node, res *scheduler.Result, set *v1.Set) (started []string, refused int) {
	specs, err := agent.FromPlan(set, res, "")
	if err != nil {
		fmt.Fprintf(out, "  %v\n", err)
		return nil, len(res.Placements)
	}
	node2plan := map[string]string{}
	for _, p := range res.Placements {
		node2plan[agent.ReplicaID(p.Workload, p.Replica)] = p.Node
	}
	for _, spec := range specs {
		if len(spec.Args) == 0 {
			spec.Args = []string{"sleep", "3600"}
		}
		// This one machine can't hold a plan made for a datacenter: cap
		// each demo replica's limits so the demo fits.
		spec.Resources.MilliCPU = min(spec.Resources.MilliCPU, 500)
		spec.Resources.Memory = min(spec.Resources.Memory, 64<<20)
		_ = node.Remove(ctx, spec.ID) // a leftover of an interrupted demo
		t0 := time.Now()
		if err := node.Start(ctx, spec); err != nil {
			refused++
			fmt.Fprintf(out, "  %-32s %-9s REFUSED: %v\n", spec.ID, spec.Tier, err)
			continue
		}
		started = append(started, spec.ID)
		fmt.Fprintf(out, "  %-32s %-9s started in %v (planned node %s)\n", spec.ID, spec.Tier, time.Since(t0).Round(time.Millisecond), node2plan[spec.ID])
	}
	return started, refused
}

// printVerify proves each running replica's isolation from its live
// processes, exactly as `rung verify` does.
func printVerify(ctx context.Context, out io.Writer, node *replica.Node, ids []string) {
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	fmt.Fprintf(out, "\nrung verify (read from the live processes on the host):\n\n")
	reps, err := verifyReplicas(ctx, node.Dir(), ids)
	if err != nil {
		fmt.Fprintf(out, "verify: %v\n", err)
		return
	}
	printVerifyTable(out, reps)
}
