package microvm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// ErrExecUnsupported: what an exec asked for (a terminal, standard input)
// is not carried by the vm tier's channel yet.
var ErrExecUnsupported = errors.New("not supported by the vm tier's exec")

// execReq is one exec in flight.
type execReq struct {
	stdout, stderr io.Writer
	done           chan channel.Exit
}

// ExecProcess runs args in the running replica id through the guest's
// init, in the workload's context (its root, user, environment, working
// directory, no_new_privs), and returns its exit code (127 for a missing
// program). Output only: no terminal, no standard input. The base process
// is the bundle's, which the guest already has.
func (d *Driver) ExecProcess(ctx context.Context, id string, _ *specs.Process, args []string, stdio runtime.ExecIO) (int, error) {
	if stdio.Tty || stdio.Stdin != nil {
		return -1, fmt.Errorf("vm exec %s: a terminal or standard input: %w", id, ErrExecUnsupported)
	}
	if len(args) == 0 {
		return -1, fmt.Errorf("vm exec %s: no command", id)
	}
	v, err := d.get(id)
	if err != nil {
		return -1, err
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return -1, err
	}
	r := &execReq{stdout: orDiscard(stdio.Stdout), stderr: orDiscard(stdio.Stderr), done: make(chan channel.Exit, 1)}
	v.mu.Lock()
	if v.status != runtime.Running || v.frames == nil {
		v.mu.Unlock()
		return -1, fmt.Errorf("vm exec %s: %w", id, runtime.ErrNotRunning)
	}
	v.nextExec++
	eid := v.nextExec
	if v.execs == nil {
		v.execs = map[uint32]*execReq{}
	}
	v.execs[eid] = r
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		delete(v.execs, eid)
		v.mu.Unlock()
	}()
	if err := v.write(channel.KindExec, channel.Tagged(eid, payload)); err != nil {
		return -1, fmt.Errorf("vm exec %s: %w", id, err)
	}
	select {
	case e := <-r.done:
		if e.Code == runtime.ExitCodeNotFound {
			return e.Code, fmt.Errorf("vm exec %s: %s: %w", id, args[0], runtime.ErrExecNotFound)
		}
		return e.Code, nil
	case <-v.done:
		return -1, fmt.Errorf("vm exec %s: %w", id, runtime.ErrNotRunning)
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// execFrame routes an exec's frame to its request.
func (v *vm) execFrame(k channel.Kind, p []byte) {
	eid, rest, ok := channel.Untag(p)
	if !ok {
		return
	}
	v.mu.Lock()
	r := v.execs[eid]
	v.mu.Unlock()
	if r == nil {
		return
	}
	switch k {
	case channel.KindExecStdout:
		_, _ = r.stdout.Write(rest)
	case channel.KindExecStderr:
		_, _ = r.stderr.Write(rest)
	case channel.KindExecExit:
		var e channel.Exit
		if json.Unmarshal(rest, &e) == nil {
			r.done <- e
		}
	}
}

// write sends one frame to the guest.
func (v *vm) write(k channel.Kind, p []byte) error {
	v.mu.Lock()
	conn := v.conn
	v.mu.Unlock()
	if conn == nil {
		return runtime.ErrNotRunning
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	return channel.Write(conn, k, p)
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
