package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
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
		node                      string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--tenant TENANT]",
		Short: "Create a bearer token (operators only); prints the token once",
		Long: `Creates an API token and prints it on stdout; it is stored hashed and
cannot be shown again. Roles:
  operator       topology, policy and every tenant
  tenant-admin   the tenant's workloads; reads its Tenant (needs --tenant)
  tenant-viewer  reads the tenant's workloads and Tenant (needs --tenant)
  node           one node's rung agent: heartbeats as it, reads its replicas (needs --node)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			create := func() (wire.TokenResponse, error) { return c.CreateToken(cmd.Context(), role, tenant, description) }
			if node != "" || role == string(auth.NodeAgent) {
				if role != string(auth.NodeAgent) || tenant != "" {
					return withCode(ExitInvalid, fmt.Errorf("--node goes with --role node and no --tenant"))
				}
				create = func() (wire.TokenResponse, error) { return c.CreateNodeToken(cmd.Context(), node, description) }
			}
			t, err := create()
			if err != nil {
				return apiError(err)
			}
			scope := ""
			if t.Tenant != "" {
				scope = " of tenant " + t.Tenant
			}
			if t.Node != "" {
				scope = " of node " + t.Node
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s: role %s%s (shown once; keep it secret)\n", t.ID, t.Role, scope)
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "", "operator, tenant-admin, tenant-viewer or node")
	fl.StringVar(&node, "node", "", "node a node token is scoped to")
	fl.StringVar(&tenant, "tenant", "", "tenant the role is scoped to")
	fl.StringVar(&description, "description", "", "who or what the token is for")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}
