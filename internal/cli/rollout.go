package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
)

// `rung rollout status|history|undo WORKLOAD` (DESIGN §8): a workload whose
// image, command or environment changes rolls out under spec.rollout.
func newRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout (status|history|undo) WORKLOAD",
		Short: "Follow, list or undo a workload's rollouts",
		Long: `A workload whose template changes (image, command, arguments, environment,
health check, restart policy) moves to it step by step: never fewer ready
replicas than spec.replicas - spec.rollout.maxUnavailable (default 0), never
more than spec.replicas + spec.rollout.maxSurge (default 1). A change of
what bears on placement (resources, spread, tier…) places it anew.`,
	}
	cmd.AddCommand(newRolloutStatusCmd(), newRolloutHistoryCmd(), newRolloutUndoCmd())
	return cmd
}

func rolloutTarget(cmd *cobra.Command, cf *clientFlags, arg, tenant string) (*client.Client, client.Ref, error) {
	c, err := cf.client()
	if err != nil {
		return nil, client.Ref{}, err
	}
	r, err := ref(cmd, c, v1.KindWorkload, arg, tenant)
	return c, r, err
}

func newRolloutStatusCmd() *cobra.Command {
	var (
		cf      clientFlags
		tenant  string
		watch   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status WORKLOAD",
		Short: "Wait for a workload's rollout to finish, printing its progress",
		Long: `Prints how many replicas run the current version and are ready, and waits
until every one is (exit 0), the rollout is blocked (exit 1, with why), or
--timeout passes (exit 1). --watch=false prints once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, r, err := rolloutTarget(cmd, &cf, args[0], tenant)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			deadline := time.Now().Add(timeout)
			last := ""
			for {
				ro, err := c.Rollout(cmd.Context(), r.Tenant, r.Name)
				if err != nil {
					return apiError(err)
				}
				line := fmt.Sprintf("workload %s: %d of %d replicas updated, %d ready", ro.Workload, ro.Updated, ro.Replicas, ro.Ready)
				if ro.Old > 0 || ro.Surge > 0 {
					line += fmt.Sprintf(" (%d on an older version, %d surge)", ro.Old, ro.Surge)
				}
				if line != last {
					fmt.Fprintln(out, line)
					last = line
				}
				switch {
				case ro.Done:
					fmt.Fprintf(out, "workload %s successfully rolled out\n", ro.Workload)
					return nil
				case ro.Blocked != "":
					return fmt.Errorf("rollout of %s blocked: %s", ro.Workload, ro.Blocked)
				case !watch:
					return nil
				case time.Now().After(deadline):
					return fmt.Errorf("rollout of %s not done after %s", ro.Workload, timeout)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rollout is done")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up waiting after this long")
	return cmd
}

func newRolloutHistoryCmd() *cobra.Command {
	var (
		cf     clientFlags
		tenant string
	)
	cmd := &cobra.Command{
		Use:   "history WORKLOAD",
		Short: "List a workload's earlier versions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, r, err := rolloutTarget(cmd, &cf, args[0], tenant)
			if err != nil {
				return err
			}
			ro, err := c.Rollout(cmd.Context(), r.Tenant, r.Name)
			if err != nil {
				return apiError(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tTEMPLATE\tIMAGE\tREPLACED")
			for i, h := range ro.History {
				var spec v1.WorkloadSpec
				_ = json.Unmarshal(h.Spec, &spec)
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, h.Template, spec.Image, h.At.UTC().Format(time.RFC3339))
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t(current)\n", len(ro.History)+1, ro.Template, currentImage(cmd, c, r))
			return tw.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	return cmd
}

func currentImage(cmd *cobra.Command, c *client.Client, r client.Ref) string {
	w, err := c.GetWorkload(cmd.Context(), r.Tenant, r.Name)
	if err != nil {
		return "?"
	}
	return w.Spec.Image
}

func newRolloutUndoCmd() *cobra.Command {
	var (
		cf       clientFlags
		tenant   string
		revision int
	)
	cmd := &cobra.Command{
		Use:   "undo WORKLOAD [--to-revision N]",
		Short: "Roll a workload back to its previous version (or revision N of rollout history)",
		Long: `Sets the workload's spec back to an earlier version's (its replica count and
rollout settings stay), which rolls out like any change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, r, err := rolloutTarget(cmd, &cf, args[0], tenant)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ro, err := c.Rollout(ctx, r.Tenant, r.Name)
			if err != nil {
				return apiError(err)
			}
			if len(ro.History) == 0 {
				return errors.New("no earlier version to go back to (rung rollout history lists them)")
			}
			pick := len(ro.History)
			if revision != 0 {
				if revision < 1 || revision > len(ro.History) {
					return withCode(ExitInvalid, fmt.Errorf("--to-revision %d: use 1 to %d (rung rollout history)", revision, len(ro.History)))
				}
				pick = revision
			}
			var spec v1.WorkloadSpec
			if err := json.Unmarshal(ro.History[pick-1].Spec, &spec); err != nil {
				return fmt.Errorf("revision %d: %w", pick, err)
			}
			w, err := c.GetWorkload(ctx, r.Tenant, r.Name)
			if err != nil {
				return apiError(err)
			}
			spec.Replicas, spec.Rollout = w.Spec.Replicas, w.Spec.Rollout
			w.Spec = spec
			if _, err := c.Apply(ctx, w); err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workload %s/%s rolled back to revision %s (%s)\n", r.Tenant, r.Name, strconv.Itoa(pick), ro.History[pick-1].Template)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	cmd.Flags().IntVar(&revision, "to-revision", 0, "the revision to go back to (default: the one before the current)")
	return cmd
}
