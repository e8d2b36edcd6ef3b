package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
)

// rulesOut is `rung rules -o json|yaml`: the operator rules (evaluated
// first) and the default table.
type rulesOut struct {
	Operator []operatorRule        `json:"operator"`
	Default  []tenancy.DefaultRule `json:"default"`
}

// operatorRule is one tenancy rule of a Policy.
type operatorRule struct {
	Policy string `json:"policy"`
	v1.Rule
}

func newRulesCmd() *cobra.Command {
	var (
		cf     clientFlags
		files  []string
		output string
	)
	cmd := &cobra.Command{
		Use:   "rules [-f PATH...]",
		Short: "Print the tenancy rules: the Policies' own rules, then the default table",
		Long: `Prints how much isolation two replicas need (docs/rules.md in the sources): the
operator rules of every Policy, which are evaluated first, then the default
table; the first rule that matches decides. Placements and explanations
name these rules ("rule 4 (same organization)", "policy NAME").

The Policies are read from -f manifests, or else from the control plane
(as rung get policies would); without either, only the default table.`,
		Example: `  rung rules
  rung rules -f examples/public-cloud -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, []string{outText, outJSON, outYAML}); err != nil {
				return err
			}
			policies, note, err := rulePolicies(cmd.Context(), &cf, files)
			if err != nil {
				return err
			}
			r := rulesOut{Operator: []operatorRule{}, Default: tenancy.DefaultTable}
			for _, p := range policies {
				for _, x := range p.Spec.Rules {
					r.Operator = append(r.Operator, operatorRule{Policy: p.Metadata.Name, Rule: x})
				}
			}
			out := cmd.OutOrStdout()
			if output == outJSON || output == outYAML {
				return printData(out, output, r)
			}
			return printRules(out, r, note)
		},
	}
	cf.register(cmd)
	cmd.Flags().StringArrayVarP(&files, "file", "f", nil, "read the Policies from these manifests instead of the control plane (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: text, json or yaml")
	return cmd
}

// rulePolicies reads the Policies from files, or else from the API when
// one is configured; note says where they came from.
func rulePolicies(ctx context.Context, cf *clientFlags, files []string) ([]v1.Policy, string, error) {
	if len(files) > 0 {
		set, err := readManifests(files)
		if err != nil {
			return nil, "", err
		}
		return set.Policies, "from " + strings.Join(files, ", "), nil
	}
	c, err := cf.client()
	if err != nil {
		return nil, "no control plane configured and no -f: the default table alone", nil
	}
	l, err := c.List(ctx, v1.KindPolicy, "")
	if err != nil {
		return nil, "", apiError(err)
	}
	ps, err := decodeItems[v1.Policy](l)
	if err != nil {
		return nil, "", err
	}
	return ps, "from the control plane", nil
}

func printRules(w io.Writer, r rulesOut, note string) error {
	fmt.Fprintf(w, "Operator rules (evaluated first; %s):\n", note)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(r.Operator) == 0 {
		fmt.Fprintln(tw, "  none")
	} else {
		fmt.Fprintln(tw, "  RULE\tREQUIRES\tWHEN\tIN POLICY")
		for _, o := range r.Operator {
			fmt.Fprintf(tw, "  policy %s\t%s\t%s\t%s\n", o.Name, o.Require, strings.Join(strings.Fields(o.When), " "), o.Policy)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nDefault table (the first matching row wins; a is the replica being wrapped, b its neighbour):")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  RULE\tREQUIRES\tWHEN\tWHY")
	for _, d := range r.Default {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", d.Ref(), d.Required, d.When, d.Why)
	}
	return tw.Flush()
}
