package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
)

// newLogsCmd is `rung logs TENANT/WORKLOAD`: the end of the workload's
// replicas' logs (standard output and error), as their node agents last
// reported them.
func newLogsCmd() *cobra.Command {
	var (
		cf      clientFlags
		tenant  string
		replica int
		tail    int
		output  string
	)
	cmd := &cobra.Command{
		Use:   "logs TENANT/WORKLOAD",
		Short: "Show the end of a workload's replicas' logs",
		Long: "Show the end of a workload's replicas' logs: their standard output and error, as their node\n" +
			"agents last reported them (the last 16 KiB of each replica, refreshed every few seconds).",
		Example: "  rung logs biology/sequencer\n  rung logs biology/sequencer --replica 1 --tail 20",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if replica < -1 {
				return withCode(ExitInvalid, fmt.Errorf("--replica %d: want a replica number, 0 or more", replica))
			}
			if tail < 0 {
				return withCode(ExitInvalid, fmt.Errorf("--tail %d: want a number of lines, 0 for all", tail))
			}
			if output != "" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: want json, or nothing for plain text", output))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			r, err := ref(cmd, c, v1.KindWorkload, args[0], tenant)
			if err != nil {
				return err
			}
			logs, err := c.Logs(cmd.Context(), r.Tenant, r.Name, replica, tail)
			if err != nil {
				return apiError(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(logs)
			}
			if len(logs.Replicas) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s/%s has no placed replicas and no logs\n", r.Tenant, r.Name)
				return nil
			}
			many := len(logs.Replicas) > 1
			for i, rl := range logs.Replicas {
				if many {
					if i > 0 {
						fmt.Fprintln(out)
					}
					fmt.Fprintf(out, "==> replica %d on %s <==\n", rl.Replica, rl.Node)
				}
				if len(rl.Lines) == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "replica %d on %s: no logs reported yet\n", rl.Replica, rl.Node)
				}
				for _, l := range rl.Lines {
					fmt.Fprintln(out, l)
				}
			}
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	fl.IntVar(&replica, "replica", -1, "only this replica (0, 1, …); default every replica")
	fl.IntVar(&tail, "tail", 0, "only the last LINES lines of each replica (0: all that was reported)")
	fl.StringVarP(&output, "output", "o", "", "json for the API's answer")
	return cmd
}
