package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newLeaderCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "leader",
		Short: "Show which control plane schedules",
		Long: `Shows which of the control planes sharing one store leads: it alone
plans and writes the plan; the others serve it. On the embedded store one
control plane always leads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			l, err := c.Leader(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			out := cmd.OutOrStdout()
			if l.ID == "" {
				fmt.Fprintln(out, "no leader (the control planes are campaigning)")
				return nil
			}
			self := "another control plane leads"
			if l.Answering {
				self = "the control plane that answered leads"
			}
			fmt.Fprintf(out, "leader %s (term %d); %s\n", l.ID, l.Term, self)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}
