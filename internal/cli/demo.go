package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"rung.dev/rung/examples"
	"rung.dev/rung/internal/scheduler"
)

func newDemoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Plan the shipped example tenants and show every decision",
		Args:  cobra.NoArgs,
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
			}
			return nil
		},
	}
}

