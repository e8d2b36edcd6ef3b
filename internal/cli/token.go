package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens",
	}
	cmd.AddCommand(newTokenCreateCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var (
		cf                        clientFlags
		role, tenant, description string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--tenant TENANT]",
		Short: "Create a bearer token (operators only); prints the token once",
		Long: `Creates an API token and prints it on stdout; it is stored hashed and
cannot be shown again. Roles:
  operator       topology, policy and every tenant
  tenant-admin   the tenant's workloads; reads its Tenant (needs --tenant)
  tenant-viewer  reads the tenant's workloads and Tenant (needs --tenant)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), role, tenant, description)
			if err != nil {
				return apiError(err)
			}
			scope := ""
			if t.Tenant != "" {
				scope = " of tenant " + t.Tenant
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s: role %s%s (shown once; keep it secret)\n", t.ID, t.Role, scope)
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "", "operator, tenant-admin or tenant-viewer")
	fl.StringVar(&tenant, "tenant", "", "tenant the role is scoped to")
	fl.StringVar(&description, "description", "", "who or what the token is for")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}
