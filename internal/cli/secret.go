package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/client"
)

func newSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Manage secrets: set, get (keys only), list, delete, rotate-key",
		Long: `A Secret is a tenant's named set of values, write-only through the API:
get and list show keys and a digest of each value, never the value. The
control plane seals the values (AES-256-GCM) with a key file rung up makes.`,
	}
	cmd.AddCommand(newSecretSetCmd(), newSecretGetCmd(), newSecretListCmd(), newSecretDeleteCmd(), newSecretRotateCmd())
	return cmd
}

// tenantName splits TENANT/NAME.
func tenantName(s string) (string, string, error) {
	t, n, ok := strings.Cut(s, "/")
	if !ok || t == "" || n == "" {
		return "", "", withCode(ExitInvalid, fmt.Errorf("%q: name a secret as TENANT/NAME", s))
	}
	return t, n, nil
}

func newSecretSetCmd() *cobra.Command {
	var (
		cf    clientFlags
		files []string
	)
	cmd := &cobra.Command{
		Use:   "set TENANT/NAME [KEY=VALUE...] [--from-file KEY=PATH...]",
		Short: "Create or replace a secret's values (prefer --from-file: arguments show in ps)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, name, err := tenantName(args[0])
			if err != nil {
				return err
			}
			s := &v1.Secret{TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindSecret},
				Metadata: v1.ObjectMeta{Name: name, Tenant: tenant}, Spec: v1.SecretSpec{Data: map[string]string{}}}
			for i, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok { // not echoed: it may be a value
					return withCode(ExitInvalid, fmt.Errorf("argument %d: give KEY=VALUE", i+2))
				}
				s.Spec.Data[k] = v
			}
			for _, kp := range files {
				k, p, ok := strings.Cut(kp, "=")
				if !ok {
					return withCode(ExitInvalid, fmt.Errorf("--from-file %q: give KEY=PATH", kp))
				}
				data, err := readFile(p, v1.MaxSecretSize)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("--from-file %s: %w", k, err))
				}
				s.Spec.Data[k] = string(data)
			}
			if err := s.Validate(); err != nil {
				return withCode(ExitInvalid, err)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			res, err := c.ApplySecret(cmd.Context(), s)
			if err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s/%s %s\n", tenant, name, res.Result)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringArrayVar(&files, "from-file", nil, "KEY=PATH: the value is the file's content")
	return cmd
}

func newSecretGetCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "get TENANT/NAME",
		Short: "Show a secret's keys and value digests (never the values)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, name, err := tenantName(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			s, err := c.GetSecret(cmd.Context(), tenant, name)
			if err != nil {
				return apiError(err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tDIGEST")
			for _, k := range s.Keys {
				fmt.Fprintf(tw, "%s\t%s\n", k.Name, k.Digest)
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	return cmd
}

func newSecretListCmd() *cobra.Command {
	var (
		cf     clientFlags
		tenant string
	)
	cmd := &cobra.Command{
		Use:   "list [--tenant T]",
		Short: "List the secrets you may see, with their keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tNAME\tKEYS")
			cont := ""
			for {
				l, err := c.ListSecrets(cmd.Context(), tenant, 0, cont)
				if errors.Is(err, client.ErrExpired) && cont != "" {
					return fmt.Errorf("the secrets changed while listing; list again")
				}
				if err != nil {
					return apiError(err)
				}
				for _, s := range l.Items {
					var keys []string
					for _, k := range s.Keys {
						keys = append(keys, k.Name)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Metadata.Tenant, s.Metadata.Name, strings.Join(keys, ","))
				}
				if cont = l.Continue; cont == "" {
					break
				}
			}
			return tw.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's secrets")
	return cmd
}

func newSecretDeleteCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "delete TENANT/NAME",
		Short: "Delete a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, name, err := tenantName(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			if _, err := c.DeleteSecret(cmd.Context(), tenant, name); err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s/%s deleted\n", tenant, name)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}

func newSecretRotateCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "rotate-key",
		Short: "Seal every secret again under a new key and retire the old ones (operators)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			k, err := c.RotateSecretKey(cmd.Context())
			if err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new key %s: %d secret(s) sealed again; old keys retired: %v\n", k.KeyID, k.Resealed, k.Retired)
			return nil
		},
	}
	cf.register(cmd)
	return cmd
}
