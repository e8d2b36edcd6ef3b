package cli

import (
	"context"
	"errors"
	"fmt"

	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/server/wire"
)

func newExecCmd() *cobra.Command {
	var (
		cf         clientFlags
		tenant     string
		stdin, tty bool
	)
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] WORKLOAD[/INDEX] -- COMMAND [ARG...]",
		Short: "Run a command inside a running replica",
		Long: `Runs COMMAND inside replica INDEX (default 0) of WORKLOAD, as the replica's
own user, in its namespaces, under its seccomp filter and no_new_privs, with
no capabilities (sandbox tier: inside gVisor). Needs a tenant-admin or
operator token; every exec is in the audit log with its command line.
Exits with the command's exit code (127 when it does not exist in the image).`,
		Example: "  rung exec biology/sequencer -- cat /proc/self/status\n  rung exec -it biology/sequencer/1 -- sh",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return withCode(ExitInvalid, errors.New("usage: rung exec [-i] [-t] WORKLOAD[/INDEX] -- COMMAND [ARG...]"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			target, err := parseReplicaTarget(cmd, c, args[0], tenant)
			if err != nil {
				return err
			}
			if target.index < 0 {
				target.index = 0
			}
			io := client.ExecIO{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr(), Tty: tty}
			if stdin {
				io.Stdin = cmd.InOrStdin()
			}
			if tty {
				if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					old, err := term.MakeRaw(int(f.Fd()))
					if err == nil {
						defer term.Restore(int(f.Fd()), old)
					}
					io.Resize = terminalSizes(cmd.Context(), int(f.Fd()))
				}
			}
			code, err := c.Exec(cmd.Context(), target.tenant, target.name, target.index, args[1:], io)
			if err != nil && code != 127 {
				return apiError(err)
			}
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "rung: %v\n", err)
			}
			if code != 0 {
				return silent{code: code}
			}
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	cmd.Flags().BoolVarP(&stdin, "stdin", "i", false, "pass this terminal's standard input to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "run the command on a terminal")
	return cmd
}

// terminalSizes sends the terminal's size now and each time it changes
// (SIGWINCH), until ctx ends.
func terminalSizes(ctx context.Context, fd int) <-chan wire.TermSize {
	ch := make(chan wire.TermSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		defer close(ch)
		defer signal.Stop(winch)
		for {
			if w, h, err := term.GetSize(fd); err == nil {
				select {
				case ch <- wire.TermSize{Width: uint16(w), Height: uint16(h)}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-winch:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}
