package microvm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// Start lets the jail exec QEMU, connects to the guest's channel, waits for
// the guest's init, hands it the workload and returns once it runs. A
// guest that does not report within the boot timeout is stopped.
func (d *Driver) Start(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	if v.status != runtime.Created {
		st := v.status
		v.mu.Unlock()
		return fmt.Errorf("vm start %s: %s: %w", id, st, runtime.ErrNotRunning)
	}
	v.status = runtime.Running
	v.mu.Unlock()
	if _, err := v.gate.Write([]byte{'G'}); err != nil {
		return fmt.Errorf("vm start %s: release the jail: %w", id, err)
	}
	v.gate.Close()
	timeout := d.opt.BootTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
		if !d.boot.kvm {
			timeout = 300 * time.Second
		}
	}
	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.handshake(bctx, v); err != nil {
		d.kill(v, syscall.SIGKILL)
		<-v.done
		if bctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: no word from the guest's init within %v; %s", ErrBootTimeout, timeout, d.consoleTail(v))
		}
		return fmt.Errorf("vm start %s: %w", id, err)
	}
	return nil
}

// handshake connects, reads Hello, sends the workload and reads Started.
func (d *Driver) handshake(ctx context.Context, v *vm) error {
	sock := filepath.Join(v.dir, "run", "channel.sock")
	var conn net.Conn
	for {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "unix", sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-v.done:
			return fmt.Errorf("%w: the vmm exited (%v): %s", ErrGuest, v.cmd.ProcessState, d.vmmTail(v))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	v.mu.Lock()
	v.conn = conn
	v.mu.Unlock()
	k, p, err := channel.Read(conn)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: channel: %v; %s; vmm: %s", ErrGuest, err, d.consoleTail(v), d.vmmTail(v))
	}
	if k == channel.KindError {
		return fmt.Errorf("%w: %s", ErrGuest, p)
	}
	if k != channel.KindHello || json.Unmarshal(p, &v.hello) != nil {
		return fmt.Errorf("%w: first frame %#x, want hello", ErrGuest, k)
	}
	// The boot ran unthrottled; the workload runs under its quota (fail
	// closed: no quota, no workload).
	if v.cg != nil {
		if err := v.cg.limitCPU(limitsOf(v.spec, !d.boot.kvm)); err != nil {
			return err
		}
	}
	if err := channel.WriteJSON(conn, channel.KindConfig, v.guest.config(configOf(v.spec))); err != nil {
		return fmt.Errorf("send the workload: %w", err)
	}
	k, p, err = channel.Read(conn)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: channel: %v", ErrGuest, err)
	}
	switch k {
	case channel.KindStarted:
	case channel.KindError:
		msg := string(p)
		if strings.Contains(msg, "not found") {
			return fmt.Errorf("%w: %s", runtime.ErrExecNotFound, msg)
		}
		return fmt.Errorf("%w: %s", ErrGuest, msg)
	default:
		return fmt.Errorf("%w: frame %#x, want started", ErrGuest, k)
	}
	if rec, err := d.readRecord(v.id); err == nil {
		rec.Hello = v.hello
		_ = d.writeRecord(rec)
	}
	frames := make(chan struct{})
	v.mu.Lock()
	v.frames = frames
	v.mu.Unlock()
	go d.readFrames(v, conn, frames)
	return nil
}

// readFrames copies the workload's output and takes its exit.
func (d *Driver) readFrames(v *vm, conn net.Conn, frames chan struct{}) {
	defer close(frames)
	for {
		k, p, err := channel.Read(conn)
		if err != nil {
			return
		}
		switch k {
		case channel.KindStdout:
			_, _ = v.stdout.Write(p)
		case channel.KindStderr:
			_, _ = v.stderr.Write(p)
		case channel.KindExit:
			var e channel.Exit
			if json.Unmarshal(p, &e) == nil {
				v.mu.Lock()
				v.exit = &runtime.Exit{Code: e.Code, Signal: syscall.Signal(e.Signal), At: time.Now()}
				v.mu.Unlock()
			}
			return
		case channel.KindError:
			v.mu.Lock()
			v.exitErr = fmt.Errorf("%w: %s", ErrGuest, p)
			v.mu.Unlock()
			return
		case channel.KindExecStdout, channel.KindExecStderr, channel.KindExecExit:
			v.execFrame(k, p)
		}
	}
}

// configOf is the workload the guest runs: the bundle's process.
func configOf(s *specs.Spec) channel.Config {
	p := s.Process
	c := channel.Config{Args: p.Args, Env: p.Env, Cwd: p.Cwd, UID: p.User.UID, GID: p.User.GID, Groups: p.User.AdditionalGids, Hostname: s.Hostname}
	for _, m := range s.Mounts {
		if m.Destination == "/tmp" && m.Type == "tmpfs" {
			for _, o := range m.Options {
				if sz, ok := strings.CutPrefix(o, "size="); ok {
					var n int
					if _, err := fmt.Sscanf(sz, "%dm", &n); err == nil {
						c.TmpMiB = n
					}
				}
			}
		}
	}
	return c
}
