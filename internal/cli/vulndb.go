package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/vulndb"
)

// vulnDBName is the vulnerability database's file in the data directory.
const vulnDBName = "vulndb.db"

// newVulnDBCmd is `rung vulndb`: the operator's offline OSV database.
func newVulnDBCmd() *cobra.Command {
	var dataDir, path string
	cmd := &cobra.Command{
		Use:   "vulndb",
		Short: "Manage the offline vulnerability database (OSV format)",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultImageDataDir, "data directory; the database is DIR/"+vulnDBName)
	cmd.PersistentFlags().StringVar(&path, "db", "", "database file (overrides --data-dir)")
	dbPath := func() string {
		if path != "" {
			return path
		}
		return filepath.Join(dataDir, vulnDBName)
	}
	imp := &cobra.Command{
		Use:   "import DIR|ZIP|FILE…",
		Short: "Import OSV records: a directory of *.json, an osv.dev all.zip, or one record",
		Long: "Import OSV records (https://ossf.github.io/osv-schema/), such as osv.dev's per-ecosystem\n" +
			"exports (Debian/all.zip, Alpine/all.zip, ...). Each source is one transaction: a record that is not\n" +
			"valid OSV fails that source and leaves the database as it was. Newer records replace older\n" +
			"ones; withdrawn records are removed.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := vulndb.Open(cmd.Context(), dbPath(), vulndb.Options{})
			if err != nil {
				return err
			}
			defer db.Close()
			for _, src := range args {
				st, err := db.Import(cmd.Context(), src, time.Now().UTC())
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d read, %d added or updated, %d unchanged, %d withdrawn, %d without OS packages\n",
					src, st.Read, st.Added, st.Unchanged, st.Withdrawn, st.Skipped)
			}
			return nil
		},
	}
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Show what the database holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := vulndb.Open(cmd.Context(), dbPath(), vulndb.Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := db.Stats()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d vulnerabilities, %d package advisories, updated %s\n",
				dbPath(), st.Vulnerabilities, st.Advisories, st.Updated.Format(time.RFC3339))
			return nil
		},
	}
	cmd.AddCommand(imp, stats)
	return cmd
}
