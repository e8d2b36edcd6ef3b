package drivertest

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"rung.dev/rung/internal/runtime"
)

// ExecDriver is a driver that runs processes inside its containers.
type ExecDriver interface {
	runtime.Driver
	Exec(ctx context.Context, id string, args []string, stdio runtime.ExecIO) (int, error)
}

// RunExec is the conformance suite of Exec: an exec'd process runs in the
// container with no capabilities and (proven by inside, given the exec'd process's own /proc/self/status
// and a way to exec more) the driver's confinement;
// exit codes, a missing program (127) and a cancelled exec that must kill
// the process inside the container.
func RunExec(t *testing.T, d ExecDriver, prefix string, mk BundleFunc, inside func(t *testing.T, status string, exec func(args ...string) string)) {
	ctx := ctxT(t)
	id := prefix + "-exec"
	dir := mk(t, id, "sleep 300")
	Started(t, d, id, dir)

	run := func(args ...string) (string, string, int, error) {
		var out, errb bytes.Buffer
		code, err := d.Exec(ctx, id, args, runtime.ExecIO{Stdout: &out, Stderr: &errb})
		return out.String(), errb.String(), code, err
	}
	t.Run("Identity", func(t *testing.T) {
		status, _, code, err := run("cat", "/proc/self/status")
		if err != nil || code != 0 {
			t.Fatalf("exec cat status: code %d err %v", code, err)
		}
		for field, want := range map[string]string{"CapEff": "0000000000000000", "CapPrm": "0000000000000000"} {
			m := regexp.MustCompile(`(?m)^` + field + `:\s*(\S+)`).FindStringSubmatch(status)
			if m == nil || m[1] != want {
				t.Errorf("%s of the exec'd process = %v, want %s", field, m, want)
			}
		}
		inside(t, status, func(args ...string) string {
			out, errs, code, err := run(args...)
			if err != nil || code != 0 {
				t.Fatalf("exec %q: code %d err %v: %s", args, code, err, errs)
			}
			return out
		})
	})
	t.Run("ExitCode", func(t *testing.T) {
		out, _, code, err := run("sh", "-c", "echo out; exit 3")
		if err != nil || code != 3 || out != "out\n" {
			t.Errorf("exec exit 3 = %q, code %d, err %v", out, code, err)
		}
		if _, _, code, err := run("true"); err != nil || code != 0 {
			t.Errorf("exec true = code %d, err %v", code, err)
		}
	})
	t.Run("Stdin", func(t *testing.T) {
		var out bytes.Buffer
		code, err := d.Exec(ctx, id, []string{"cat"}, runtime.ExecIO{Stdin: strings.NewReader("piped\n"), Stdout: &out})
		if err != nil || code != 0 || out.String() != "piped\n" {
			t.Errorf("exec cat with stdin = %q, code %d, err %v", out.String(), code, err)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		_, _, code, err := run("/no/such/program")
		if code != runtime.ExitCodeNotFound || !errors.Is(err, runtime.ErrExecNotFound) {
			t.Errorf("exec of a missing program = code %d, err %v; want 127 and ErrExecNotFound", code, err)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		// A hanging command is killed inside the container when its
		// context ends, not only the runtime CLI that started it.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		code, err := d.Exec(cctx, id, []string{"sh", "-c", "exec sleep 1234"}, runtime.ExecIO{})
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("exec of a hanging command = code %d, err %v; want a deadline error", code, err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			ps, _, _, err := run("sh", "-c", "cat /proc/[0-9]*/cmdline")
			if err != nil {
				t.Fatalf("ps: %v", err)
			}
			if !strings.Contains(ps, "sleep\x001234") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cancelled exec still runs in the container:\n%s", ps)
			}
		}
	})
	t.Run("Tty", func(t *testing.T) {
		var out bytes.Buffer
		code, err := d.Exec(ctx, id, []string{"sh", "-c", "tty; test -t 0 && echo isatty"}, runtime.ExecIO{Stdout: &out, Tty: true})
		if err != nil || code != 0 || !strings.Contains(out.String(), "isatty") {
			t.Errorf("exec on a tty = %q, code %d, err %v", out.String(), code, err)
		}
		// The terminal takes the size the caller gives it.
		sizes := make(chan runtime.TermSize, 1)
		sizes <- runtime.TermSize{Rows: 40, Cols: 100}
		close(sizes)
		out.Reset()
		code, err = d.Exec(ctx, id, []string{"/bin/busybox", "stty", "size"}, runtime.ExecIO{Stdout: &out, Tty: true, Resize: sizes})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "40 100" {
			t.Errorf("stty size on a 40x100 terminal = %q, code %d, err %v", out.String(), code, err)
		}
	})
	t.Run("NotRunning", func(t *testing.T) {
		if _, err := d.Exec(ctx, prefix+"-nosuch", []string{"true"}, runtime.ExecIO{}); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("exec in an unknown container = %v, want ErrNotFound", err)
		}
	})
}
