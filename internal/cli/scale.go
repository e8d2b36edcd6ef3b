package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
)

func newScaleCmd() *cobra.Command {
	var (
		cf       clientFlags
		tenant   string
		replicas int
	)
	cmd := &cobra.Command{
		Use:   "scale WORKLOAD --replicas N",
		Short: "Set how many replicas a workload runs",
		Long: `Sets spec.replicas of a workload on the control plane (the stored object
changes as with rung apply). Its replicas stay where they are: new ones
are placed, and the highest-numbered ones stop when it shrinks. Exit 3
when a new replica can't be placed, with the planner's reasons.`,
		Example: "  rung scale biology/sequencer --replicas 5",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return withCode(ExitInvalid, errors.New("--replicas: missing; say how many replicas, e.g. --replicas 3"))
			}
			if replicas < 0 || replicas > v1.MaxReplicas {
				return withCode(ExitInvalid, fmt.Errorf("--replicas %d: use 0 to %d", replicas, v1.MaxReplicas))
			}
			if strings.Count(args[0], "/") > 1 {
				return withCode(ExitInvalid, fmt.Errorf("%q: scale a workload (TENANT/NAME), not one replica", args[0]))
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			r, err := ref(cmd, c, v1.KindWorkload, args[0], tenant)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			w, err := c.GetWorkload(ctx, r.Tenant, r.Name)
			if err != nil {
				return apiError(err)
			}
			was := v1.DefaultReplicas
			if w.Spec.Replicas != nil {
				was = *w.Spec.Replicas
			}
			w.Spec.Replicas = &replicas
			res, err := c.Apply(ctx, w)
			if err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "workload %s/%s scaled from %d to %d replicas (%s)\n", r.Tenant, r.Name, was, replicas, res.Result)
			return unplacedOf(cmd, c, &v1.Set{Workloads: []v1.Workload{*w}})
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	cmd.Flags().IntVar(&replicas, "replicas", 0, "the number of replicas")
	return cmd
}
