package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens: create, list, revoke, rotate-admin",
	}
	cmd.AddCommand(newTokenCreateCmd(), newTokenListCmd(), newTokenRevokeCmd(), newTokenRotateAdminCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var (
		cf                              clientFlags
		role, tenant, description, name string
		node, ttl                       string
	)
	cmd := &cobra.Command{
		Use:   "create --role ROLE [--tenant TENANT] [--ttl D] [--name N]",
		Short: "Create a bearer token (operators only); prints the token once",
		Long: `Creates an API token and prints it on stdout; it is stored hashed and
cannot be shown again. It expires after --ttl (default 90d; at most 366d).
A tenant's token is bound to that tenant: deleting the tenant revokes it,
and a new tenant of the same name does not get it. Roles:
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
			if node != "" || role == string(auth.NodeAgent) {
				if role != string(auth.NodeAgent) || tenant != "" {
					return withCode(ExitInvalid, fmt.Errorf("--node goes with --role node and no --tenant"))
				}
			}
			t, err := c.NewToken(cmd.Context(), wire.TokenRequest{Role: role, Tenant: tenant, Node: node, Name: name, Description: description, TTL: ttl})
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
			exp := "never expires"
			if !t.Expires.IsZero() {
				exp = "expires " + t.Expires.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s: role %s%s, %s (shown once; keep it secret)\n", t.ID, t.Role, scope, exp)
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&role, "role", "", "operator, tenant-admin, tenant-viewer or node")
	fl.StringVar(&node, "node", "", "node a node token is scoped to")
	fl.StringVar(&tenant, "tenant", "", "tenant the role is scoped to")
	fl.StringVar(&name, "name", "", "short label shown by `rung token list`")
	fl.StringVar(&ttl, "ttl", "", "lifetime, such as 720h or 30d (default 90d)")
	fl.StringVar(&description, "description", "", "who or what the token is for")
	_ = cmd.MarkFlagRequired("role")
	return cmd
}

func newTokenListCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (operators only): id, name, role, scope, expiry, state; never a secret",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			toks, err := c.AllTokens(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tSCOPE\tCREATED\tEXPIRES\tSTATE")
			for _, t := range toks {
				scope := "-"
				switch {
				case t.Tenant != "":
					scope = "tenant " + t.Tenant
				case t.Node != "":
					scope = "node " + t.Node
				}
				name := t.Name
				if t.Admin {
					name += " (admin)"
				}
				exp := "never"
				if !t.Expires.IsZero() {
					exp = t.Expires.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, dash(name), t.Role, scope, t.Created.UTC().Format(time.RFC3339), exp, t.State)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTokenRevokeCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token by its ID (see `rung token list`); it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if _, err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", args[0])
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func newTokenRotateAdminCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rotate-admin",
		Short: "Replace rung up's admin token: the old one stops working; rung up writes the new one to its admin.token file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			t, err := c.RotateAdminToken(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "admin token %s made; earlier admin tokens are revoked; rung up wrote it to its admin.token file and client configs\n", t.ID)
			if t.Warning != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", t.Warning)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}
