package cli

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// Version is rung's release, set at build time with
// -ldflags "-X rung.dev/rung/internal/cli.Version=v1.2.3"; without it the
// module version of the build (or "devel") stands.
var Version = ""

// versionOut is `rung version -o json|yaml`.
type versionOut struct {
	Version  string          `json:"version"`
	Commit   string          `json:"commit"`
	Modified bool            `json:"modified,omitempty"`
	Built    string          `json:"commitTime,omitempty"`
	Go       string          `json:"go"`
	Runtimes []runtimeBinary `json:"runtimes"`
}

// runtimeBinary is one tier's runtime as found on PATH.
type runtimeBinary struct {
	Tier    string `json:"tier"`
	Binary  string `json:"binary"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	// Error says why it was not found or did not answer --version.
	Error string `json:"error,omitempty"`
}

// tierBinaries are the programs each tier runs with (DESIGN §1).
var tierBinaries = []struct{ tier, bin string }{
	{"container", "runc"}, {"sandbox", "runsc"}, {"vm", "qemu-system-x86_64"},
}

func buildVersion() versionOut {
	v := versionOut{Version: Version, Commit: "unknown", Runtimes: []runtimeBinary{}}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v.Go = bi.GoVersion
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.Built = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	v.Version = cmp.Or(v.Version, "devel")
	return v
}

// findRuntimes looks each tier's program up on PATH and asks its version.
// It only finds them: `rung agent` probes a tier for real (a hardened
// container must start) before it offers it.
func findRuntimes(ctx context.Context) []runtimeBinary {
	var out []runtimeBinary
	for _, tb := range tierBinaries {
		r := runtimeBinary{Tier: tb.tier, Binary: tb.bin}
		p, err := exec.LookPath(tb.bin)
		if err != nil {
			r.Error = "not found on PATH"
			out = append(out, r)
			continue
		}
		r.Path = p
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, err := exec.CommandContext(ctx, p, "--version").Output()
		cancel()
		if err != nil {
			r.Error = fmt.Sprintf("%s --version: %v", p, err)
		} else {
			r.Version, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
		}
		out = append(out, r)
	}
	return out
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print rung's version, commit, Go version and the runtimes found here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, []string{outText, outJSON, outYAML}); err != nil {
				return err
			}
			v := buildVersion()
			v.Runtimes = findRuntimes(cmd.Context())
			out := cmd.OutOrStdout()
			if output == outJSON || output == outYAML {
				return printData(out, output, v)
			}
			commit := v.Commit
			if v.Modified {
				commit += " (modified)"
			}
			if v.Built != "" {
				commit += " of " + v.Built
			}
			fmt.Fprintf(out, "rung %s\ncommit %s\n%s\n\nruntimes found on PATH (rung agent probes each before offering its tier):\n", v.Version, commit, v.Go)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  TIER\tBINARY\tPATH\tVERSION")
			for _, r := range v.Runtimes {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", r.Tier, r.Binary, cmp.Or(r.Path, "-"), cmp.Or(r.Version, r.Error))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", outText, "output format: text, json or yaml")
	return cmd
}
