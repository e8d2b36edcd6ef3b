package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/topology"
)

// planFlags are shared by plan and explain.
type planFlags struct {
	files  []string
	output string
	down   []string
	from   string
}

func (f *planFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "file", "f", nil, "manifest file or directory (repeatable)")
	cmd.Flags().StringArrayVar(&f.down, "down", nil, "treat a failure domain as lost, LEVEL=NAME (repeatable)")
	cmd.Flags().StringVar(&f.from, "from", "", "`FILE` of an earlier rung plan -o json: where replicas run now")
}

// problem loads manifests, compiles policy rules, applies --down and --from.
func (f *planFlags) problem() (*scheduler.Problem, []string, error) {
	if len(f.files) == 0 {
		return nil, nil, withCode(ExitInvalid, errors.New("no manifests: pass -f FILE or -f DIR"))
	}
	set, err := v1.Load(f.files...)
	if err != nil {
		return nil, nil, withCode(ExitInvalid, err)
	}
	prob, err := scheduler.ProblemOf(set, topology.DefaultRuntimes)
	if err != nil {
		return nil, nil, withCode(ExitInvalid, err)
	}
	var notes []string
	for _, d := range f.down {
		level, name, ok := strings.Cut(d, "=")
		if !ok || level == "" || name == "" {
			return nil, nil, withCode(ExitInvalid, fmt.Errorf("--down %q: want LEVEL=NAME, e.g. --down rack=r7", d))
		}
		n, err := prob.Topology.MarkDown(level, name)
		if err != nil {
			return nil, nil, withCode(ExitInvalid, err)
		}
		notes = append(notes, fmt.Sprintf("%s=%s down: %d node(s) lost", level, name, n))
	}
	if f.from != "" {
		prev, err := readPlan(f.from)
		if err != nil {
			return nil, nil, withCode(ExitInvalid, err)
		}
		notes = append(notes, prob.Keep(prev)...)
	}
	return prob, notes, nil
}

// maxPlanFile caps --from input; a plan of 100,000 replicas is ~20 MiB.
const maxPlanFile = 64 << 20

func readPlan(path string) (*scheduler.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(io.LimitReader(f, maxPlanFile))
	dec.DisallowUnknownFields()
	var r scheduler.Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("--from %s: not a `rung plan -o json` output: %w", path, err)
	}
	return &r, nil
}

func newPlanCmd() *cobra.Command {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "plan -f PATH... [-o text|json|yaml]",
		Short: "Place every replica and choose its tier, offline",
		Long: `Reads Topology, Tenant, Workload and Policy manifests and prints, for every
replica, its tier and node and the rule that set the tier, or why it cannot
be placed. Exit 0 when every replica is placed, 3 when any is not, 2 on
invalid input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(f.output, []string{outText, outJSON, outYAML}); err != nil {
				return err
			}
			prob, notes, err := f.problem()
			if err != nil {
				return err
			}
			res, err := scheduler.Plan(prob, scheduler.Options{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if f.output == outJSON || f.output == outYAML {
				if err := printData(out, f.output, res); err != nil {
					return err
				}
			} else {
				printPlan(out, res, notes)
			}
			if len(res.Unplaced) > 0 {
				return silent{code: ExitUnplaced}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// printPlan writes the plan as a table, then what is unplaced and a summary.
func printPlan(w io.Writer, res *scheduler.Result, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tREPLICA\tTIER\tNODE\tHOST\tREASON")
	tiers := map[string]int{}
	hosts := map[string]bool{}
	for _, p := range res.Placements {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", p.Workload, p.Replica, p.Tier, p.Node, p.Host, p.Reason)
		tiers[p.Tier]++
		hosts[p.Host] = true
	}
	tw.Flush()
	if len(res.Unplaced) > 0 {
		fmt.Fprintln(w, "\nUNPLACED")
		for _, u := range res.Unplaced {
			fmt.Fprintf(w, "  %s[%d]:\n", u.Workload, u.Replica)
			for _, r := range u.Reasons {
				fmt.Fprintf(w, "    - %s\n", r)
			}
		}
	}
	if len(res.Problems) > 0 {
		fmt.Fprintln(w, "\nPROBLEMS")
		for _, p := range res.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	var parts []string
	for _, t := range v1.Tiers {
		if n := tiers[string(t)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	fmt.Fprintf(w, "\n%d placed (%s) on %d host(s); %d unplaced\n", len(res.Placements), strings.Join(parts, ", "), len(hosts), len(res.Unplaced))
}

func newExplainCmd() *cobra.Command {
	var f planFlags
	cmd := &cobra.Command{
		Use:   "explain -f PATH... TENANT/WORKLOAD",
		Short: "Why a workload got its tier and nodes, and why other nodes were rejected",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prob, notes, err := f.problem()
			if err != nil {
				return err
			}
			key := args[0]
			if !strings.Contains(key, "/") {
				// A bare name is fine when only one tenant has it.
				var found []string
				for i := range prob.Workloads {
					if prob.Workloads[i].Name == key {
						found = append(found, prob.Key(i))
					}
				}
				if len(found) != 1 {
					return withCode(ExitInvalid, fmt.Errorf("workload %q: name it as TENANT/NAME (matches: %v)", key, found))
				}
				key = found[0]
			}
			res, err := scheduler.Plan(prob, scheduler.Options{Explain: key})
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			printExplain(cmd.OutOrStdout(), res.Explain, notes)
			for _, u := range res.Unplaced {
				if u.Workload == key {
					return silent{code: ExitUnplaced}
				}
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func printExplain(w io.Writer, e *scheduler.Explanation, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note:", n)
	}
	fmt.Fprintf(w, "workload %s: %d replica(s)\n", e.Workload, len(e.Replicas))
	sort.SliceStable(e.Replicas, func(a, b int) bool { return e.Replicas[a].Replica < e.Replicas[b].Replica })
	for _, r := range e.Replicas {
		fmt.Fprintln(w)
		if r.Placed {
			fmt.Fprintf(w, "replica %d: %s on node %s\n  tier set by: %s\n", r.Replica, r.Tier, r.Node, r.Reason)
		} else {
			fmt.Fprintf(w, "replica %d: NOT PLACED\n  why: %s\n", r.Replica, r.Reason)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tVERDICT\tFILTER\tDETAIL")
		for _, n := range r.Nodes {
			verdict := "feasible"
			switch {
			case n.Chosen:
				verdict = "CHOSEN"
			case n.Rejected:
				verdict = "rejected"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.Node, verdict, n.Filter, n.Reason)
		}
		tw.Flush()
	}
}
