package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store/bolt"
)

// newAuditCmd is `rung audit`: inspecting the hash-chained audit log.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the audit log",
	}
	cmd.AddCommand(newAuditVerifyCmd())
	return cmd
}

// newAuditVerifyCmd is `rung audit verify`.
func newAuditVerifyCmd() *cobra.Command {
	var (
		dataDir string
		anchors []string
	)
	cmd := &cobra.Command{
		Use:   "verify [--data-dir DIR] [--anchor SEQ:HASH]...",
		Short: "Check that no audit entry was edited, removed, reordered or inserted",
		Long: `Opens the embedded store in DIR (read-only; stop rung up first, since it
holds the store) after checking the store file's integrity, and walks the
audit log's hash chain from the first entry to the head.

Prints "OK" with the number of entries and the head as SEQ:HASH, exit 0;
or the first broken entry and why, exit 1. Keep the printed head
somewhere else and pass it back with --anchor: a later run then also
detects entries removed from the end or a rewritten chain, which a chain
alone cannot show.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var heads []audit.Head
			for _, a := range anchors {
				h, err := audit.ParseHead(a)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("--anchor: %w", err))
				}
				heads = append(heads, h)
			}
			s, err := bolt.Open(dataDir, bolt.Options{ReadOnly: true})
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			defer s.Close()
			sum, err := audit.New(s).Verify(cmd.Context(), heads...)
			out := cmd.OutOrStdout()
			if b, ok := errors.AsType[*audit.Break](err); ok {
				fmt.Fprintf(out, "BROKEN at entry %d: %s\n", b.Seq, b.Reason)
				if b.Key != "" {
					fmt.Fprintf(out, "key: %s\n", b.Key)
				}
				return silent{code: ExitFailure}
			}
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			fmt.Fprintf(out, "OK: %d entries, head %s\n", sum.Entries, sum.Head)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultImageDataDir, "rung's data directory (the store is DIR/"+bolt.DBFile+")")
	f.StringArrayVar(&anchors, "anchor", nil, "a head printed by an earlier verify, SEQ:HASH; may repeat")
	return cmd
}
