// Package cli is rung's command line: cobra commands that parse flags,
// call the engine or the API, and print results. No decisions live here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"rung.dev/rung/internal/volume/iobench"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitInvalid  = 2 // invalid input: manifests, flags
	ExitUnplaced = 3 // rung plan: some replica could not be placed
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err so that Execute exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// silent is an error whose message was already printed; only the code matters.
type silent struct{ code int }

func (s silent) Error() string { return fmt.Sprintf("exit %d", s.code) }

// Execute runs the rung command line with args and returns the exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// Inside a replica of `rung bench volume`, this binary is the I/O
	// workload (benchvolume.go).
	if ok, code := iobench.Child(stdout); ok {
		return code
	}
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if s, ok := errors.AsType[silent](err); ok {
		return s.code
	}
	fmt.Fprintln(stderr, "rung:", err)
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return ExitFailure
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "rung",
		Short:         "Run many tenants' workloads with exactly enough isolation",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Runnable, so that an unknown command is a usage error (exit 2)
		// rather than help and exit 0.
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(ExitInvalid, err) })
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(commands()...)
	usageErrors(root)
	return root
}

// usageErrors makes every command's argument errors (too many, too few,
// an unknown subcommand) exit 2, like its flag errors: a usage error, not
// a failure.
func usageErrors(c *cobra.Command) {
	args := c.Args
	if !c.Runnable() && c.HasSubCommands() {
		// Runnable, so that an unknown subcommand reaches Args.
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if args == nil && c.HasSubCommands() {
		// What cobra checks when Args is unset: a command with
		// subcommands takes none of its own.
		args = func(cmd *cobra.Command, a []string) error {
			if len(a) > 0 {
				return fmt.Errorf("unknown command %q for %q", a[0], cmd.CommandPath())
			}
			return nil
		}
	}
	if args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return withCode(ExitInvalid, fmt.Errorf("%w; see %s --help", err, cmd.CommandPath()))
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageErrors(sub)
	}
}

// commands lists the subcommands; each lives in its own file.
func commands() []*cobra.Command {
	return append([]*cobra.Command{newPlanCmd(), newExplainCmd(), newDemoCmd(), newImageCmd(), newRunCmd(), newBenchCmd(), newVerifyCmd(), newCheckCmd(), newVulnDBCmd(), newAuditCmd(), newVersionCmd(), newRulesCmd()}, controlPlaneCommands()...)
}
