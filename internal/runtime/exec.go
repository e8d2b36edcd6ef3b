package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/bundle"
)

// ExecIO connects an exec'd process. Nil readers and writers mean
// /dev/null. They are always fed through pipes (or a terminal) that this
// process owns: the runtime never gets the caller's own descriptors, so
// nothing outside the replica changes owner or offset.
type ExecIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Tty runs the process on a new pseudo-terminal (stdout and stderr
	// both go to Stdout).
	Tty bool
	// Resize, with Tty, carries the sizes the terminal takes (the first
	// one before the process starts, when it is already there).
	Resize <-chan TermSize
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Rows, Cols uint16
}

// ExitCodeNotFound is the exit code of an exec whose program does not
// exist in the replica, as a shell says (127).
const ExitCodeNotFound = 127

// ErrExecNotFound: the program to exec does not exist in the replica.
var ErrExecNotFound = errors.New("executable not found in the replica")

// Exec runs args inside the running container id with the container's own
// process settings (user, environment, working directory, rlimits, its
// seccomp filter and no_new_privs, inside its user namespace) and no
// capabilities at all, like `docker exec` without --privileged. runsc runs
// it inside the sandbox's own kernel. It returns the process's exit code;
// a program that can't be found returns ExitCodeNotFound and an error
// wrapping ErrExecNotFound. When ctx ends the process is killed inside the
// container, not only the runtime CLI.
func (d *OCI) Exec(ctx context.Context, id string, args []string, stdio ExecIO) (int, error) {
	if err := d.check(id); err != nil {
		return -1, err
	}
	st, err := d.State(ctx, id)
	if err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	if st.Status != Running {
		return -1, fmt.Errorf("%s exec %s: %w (it is %s)", d.kind, id, ErrNotRunning, st.Status)
	}
	spec, err := bundle.Read(st.Bundle)
	if err != nil {
		return -1, fmt.Errorf("%s exec %s: the container's spec: %w", d.kind, id, err)
	}
	return d.ExecProcess(ctx, id, spec.Process, args, stdio)
}

// ExecProcess is Exec for a caller that knows the container's process
// settings (its bundle's config.json): it saves asking the runtime for the
// container's state. A container that does not run makes the runtime
// fail the call.
func (d *OCI) ExecProcess(ctx context.Context, id string, base *specs.Process, args []string, stdio ExecIO) (int, error) {
	if err := d.check(id); err != nil {
		return -1, err
	}
	if len(args) == 0 || args[0] == "" {
		return -1, fmt.Errorf("%s exec %s: no command", d.kind, id)
	}
	if base == nil {
		return -1, fmt.Errorf("%s exec %s: the container's spec has no process", d.kind, id)
	}
	proc := *base
	proc.Args = append([]string{}, args...)
	proc.Terminal = stdio.Tty
	proc.ConsoleSize = nil
	proc.Capabilities = &specs.LinuxCapabilities{} // none, whatever the replica was granted
	proc.NoNewPrivileges = true

	bx, err := d.loadBox(id)
	if err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	parent := d.logs
	if bx != nil {
		parent = d.boxDir(id) // runsc runs as the tenant's root
	}
	tmp, err := os.MkdirTemp(parent, "exec-")
	if err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	defer os.RemoveAll(tmp)
	procFile := filepath.Join(tmp, "process.json")
	if err := writeJSONFile(procFile, &proc); err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	if bx != nil {
		for _, p := range []string{tmp, procFile} {
			if err := os.Lchown(p, int(bx.Range.HostUID), int(bx.Range.HostGID)); err != nil {
				return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
			}
		}
	}
	pidFile := filepath.Join(tmp, "pid")
	runtimeLog := filepath.Join(tmp, "runtime.log")
	cargs := []string{"exec", "--process", procFile}
	if d.kind == "runsc" {
		// runsc's --pid-file names its own host process; the process inside
		// the sandbox is killed by its sandbox PID.
		cargs = append(cargs, "--internal-pid-file", pidFile)
	} else {
		cargs = append(cargs, "--pid-file", pidFile)
	}
	if stdio.Tty && d.kind == "runc" {
		cargs = append(cargs, "--tty") // runsc takes it from process.json
	}
	cargs = append(cargs, d.rid(id))

	// The CLI runs without ctx: when ctx ends, the process in the container
	// is killed first, then the CLI returns on its own.
	cmd, err := d.command(nil, id, runtimeLog, cargs...)
	if err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	var stderr strings.Builder
	cmd.Stdin = stdio.Stdin
	cmd.Stdout = orDiscard(stdio.Stdout)
	cmd.Stderr = io.MultiWriter(orDiscard(stdio.Stderr), &limitedWriter{w: &stderr, n: 4096})
	var term *os.File // the master of a terminal we own
	if stdio.Tty {
		// The runtime uses its controlling terminal as the process's: give
		// it the slave of a fresh pty (never the caller's) and copy the
		// master.
		master, slave, err := pty.Open()
		if err != nil {
			return -1, fmt.Errorf("%s exec %s: terminal: %w", d.kind, id, err)
		}
		defer master.Close()
		defer slave.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		term = master
		if stdio.Resize != nil {
			// A size already sent applies from the start; later ones as
			// they come, until the caller closes the channel.
			for pending := true; pending; {
				select {
				case sz, ok := <-stdio.Resize:
					if !ok {
						pending = false
						break
					}
					_ = pty.Setsize(master, &pty.Winsize{Rows: sz.Rows, Cols: sz.Cols})
				default:
					pending = false
				}
			}
			go func() {
				for sz := range stdio.Resize {
					_ = pty.Setsize(master, &pty.Winsize{Rows: sz.Rows, Cols: sz.Cols})
				}
			}()
		}
	}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, err)
	}
	copied := make(chan struct{})
	if term != nil {
		if stdio.Stdin != nil {
			go func() { _, _ = io.Copy(term, stdio.Stdin) }()
		}
		go func() {
			defer close(copied)
			_, _ = io.Copy(orDiscard(stdio.Stdout), term) // EIO once every slave is closed
		}()
	} else {
		close(copied)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-waited:
	case <-ctx.Done():
		d.killExec(id, pidFile)
		select {
		case runErr = <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			runErr = <-waited
		}
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, ctx.Err())
	}
	if term != nil {
		// Our slave is the last one open once runsc exited: closing it
		// ends the copy after the terminal's last output.
		if f, ok := cmd.Stdout.(*os.File); ok {
			f.Close()
		}
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
	}
	if runErr == nil {
		return 0, nil
	}
	exitErr, ok := errors.AsType[*exec.ExitError](runErr)
	if !ok {
		return -1, fmt.Errorf("%s exec %s: %w", d.kind, id, runErr)
	}
	// Did the process run? runc and runsc write no pid file when the
	// program could not be started, and log why.
	if _, err := os.Stat(pidFile); err != nil {
		msg := lastError(runtimeLog)
		if msg == noLoggedError || msg == noRuntimeLog {
			msg = cliMessage([]byte(stderr.String()))
		}
		if notFound(msg) {
			return ExitCodeNotFound, fmt.Errorf("%s exec %s: %s: %w", d.kind, id, msg, ErrExecNotFound)
		}
		return -1, fmt.Errorf("%s exec %s: %s: %w", d.kind, id, msg, classify(msg, runErr))
	}
	return exitErr.ExitCode(), nil
}

// notFound recognises the runtimes' messages for a program that does not
// exist (runc: "exec: \"x\": executable file not found in $PATH";
// runsc: "no such file or directory").
func notFound(msg string) bool {
	return strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory")
}

// killExec kills an exec'd process inside the container: by host PID for
// runc, by sandbox PID for runsc.
func (d *OCI) killExec(id, pidFile string) {
	pid, err := readPid(pidFile)
	if err != nil {
		return
	}
	if d.kind == "runsc" {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = d.execID(kctx, id, "kill", "--pid", fmt.Sprint(pid), d.rid(id), "KILL")
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func orDiscard(w io.Writer) io.Writer { return hideFile(w) }

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		_, _ = l.w.Write(p[:k])
	}
	return len(p), nil
}

// writeJSONFile writes v as JSON to a new private file.
func writeJSONFile(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}
