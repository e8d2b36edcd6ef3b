package microvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// State reports the replica's status; Pid is the VMM's host PID.
func (d *Driver) State(ctx context.Context, id string) (runtime.State, error) {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		// A replica of an earlier process of this driver: its VMM is gone
		// (New swept it), it is stopped.
		if rec, rerr := d.readRecord(id); rerr == nil {
			return runtime.State{ID: id, Status: runtime.Stopped, Bundle: rec.Bundle}, nil
		}
	}
	if err != nil {
		return runtime.State{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	st := runtime.State{ID: id, Status: v.status, Bundle: v.bundle}
	if v.status != runtime.Stopped && v.cmd != nil {
		st.Pid = v.cmd.Process.Pid
	} else if v.status != runtime.Stopped {
		st.Pid = v.pid
	}
	return st, nil
}

// Kill sends sig to the workload through the guest's init; SIGKILL (or
// any signal before the guest runs the workload) stops the VM at once.
func (d *Driver) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	v, err := d.get(id)
	if err != nil {
		if errors.Is(err, runtime.ErrNotFound) {
			if _, rerr := d.readRecord(id); rerr == nil {
				return fmt.Errorf("vm kill %s: %w", id, runtime.ErrNotRunning)
			}
		}
		return err
	}
	v.mu.Lock()
	st, conn, started := v.status, v.conn, v.frames != nil
	v.mu.Unlock()
	if st == runtime.Stopped {
		return fmt.Errorf("vm kill %s: %w", id, runtime.ErrNotRunning)
	}
	if sig == syscall.SIGKILL || !started || conn == nil {
		d.kill(v, sig)
		return nil
	}
	if err := v.write(channel.KindSignal, []byte{byte(sig)}); err != nil {
		d.kill(v, sig)
	}
	return nil
}

// kill stops the VMM with SIGKILL and records sig as what ended the
// workload.
func (d *Driver) kill(v *vm, sig syscall.Signal) {
	v.mu.Lock()
	if v.killed == 0 {
		v.killed = sig
	}
	v.mu.Unlock()
	if v.gate != nil {
		v.gate.Close() // a jail still waiting exits
	}
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
	}
	v.mu.Lock()
	if v.pidfd > 0 {
		_ = unix.PidfdSendSignal(v.pidfd, syscall.SIGKILL, nil, 0)
	}
	v.mu.Unlock()
}

// Wait blocks until the VM stopped and returns how its workload ended.
func (d *Driver) Wait(ctx context.Context, id string) (runtime.Exit, error) {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		if rec, rerr := d.readRecord(id); rerr == nil {
			return runtime.Exit{At: rec.Created}, fmt.Errorf("vm wait %s: %w", id, runtime.ErrExitUnknown)
		}
	}
	if err != nil {
		return runtime.Exit{}, err
	}
	select {
	case <-v.done:
	case <-ctx.Done():
		return runtime.Exit{}, ctx.Err()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return *v.exit, v.exitErr
}

// Delete stops the VM if it runs and removes its disk, run directory and
// cgroup; its log becomes the previous run's.
func (d *Driver) Delete(ctx context.Context, id string) error {
	v, err := d.get(id)
	if errors.Is(err, runtime.ErrNotFound) {
		if _, rerr := d.readRecord(id); rerr == nil {
			// Another process's VM (or a leftover): its VMM goes first.
			if pid, running := d.Running(id); running {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			d.cleanup(&vm{id: id, dir: d.vmDir(id)})
			return d.retireLog(id)
		}
	}
	if err != nil {
		return err
	}
	d.kill(v, syscall.SIGKILL)
	select {
	case <-v.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.cleanup(v)
	d.mu.Lock()
	delete(d.vms, id)
	d.mu.Unlock()
	return d.retireLog(id)
}

// cleanup removes what Create made (the VMM must be gone).
func (d *Driver) cleanup(v *vm) {
	if v.cmd != nil && v.cmd.Process != nil {
		_ = v.cmd.Process.Kill()
		select {
		case <-v.done:
		case <-time.After(30 * time.Second):
		}
	}
	for _, c := range v.closers {
		_ = c.Close()
	}
	cgPath := ""
	if v.cg != nil {
		cgPath = v.cg.path
	} else if rec, err := d.readRecord(v.id); err == nil {
		cgPath = rec.Cgroup
	}
	if cgPath != "" {
		removeCgroup(cgPath)
	}
	_ = os.RemoveAll(v.dir)
	d.pruneDisks()
}

func (d *Driver) retireLog(id string) error {
	cur := filepath.Join(d.logDir(id), runtime.CurrentLog)
	prev := filepath.Join(d.logDir(id), runtime.PreviousLog)
	if _, err := os.Stat(cur); err != nil {
		return nil
	}
	for _, s := range []string{"", ".1"} {
		_ = os.Remove(prev + s)
	}
	for _, s := range []string{".1", ""} {
		if err := os.Rename(cur+s, prev+s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Logs opens the replica's current log.
func (d *Driver) Logs(ctx context.Context, id string) (io.ReadCloser, error) {
	return d.ReadLogs(ctx, id, logfile.ReadOptions{})
}

// ReadLogs returns the replica's output as it wrote it (see runtime.OCI).
func (d *Driver) ReadLogs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("vm logs %q: %w", id, runtime.ErrInvalidID)
	}
	rc, err := runtime.ReadLogDir(ctx, d.logDir(id), o)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, fmt.Errorf("vm logs %s: %w", id, err)
	}
	return rc, err
}

// HasLogs reports whether replica id has a log here.
func (d *Driver) HasLogs(id string) bool {
	if !validID(id) {
		return false
	}
	_, err := os.Stat(d.logDir(id))
	return err == nil
}

// PurgeLogs deletes every log of replica id.
func (d *Driver) PurgeLogs(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("vm purge logs %q: %w", id, runtime.ErrInvalidID)
	}
	return os.RemoveAll(d.logDir(id))
}

// Guest returns what the guest's init reported (its kernel), once it ran.
func (d *Driver) Guest(id string) (channel.Hello, error) {
	rec, err := d.readRecord(id)
	if err != nil {
		return channel.Hello{}, err
	}
	return rec.Hello, nil
}

// consoleTail and vmmTail are the last lines of the guest's console and of
// QEMU's own output, for errors.
func (d *Driver) consoleTail(v *vm) string {
	b, _ := os.ReadFile(filepath.Join(v.dir, "run", "console.log"))
	return "console: " + strings.TrimSpace(tail(b))
}

func (d *Driver) vmmTail(v *vm) string {
	b, _ := os.ReadFile(filepath.Join(v.dir, "vmm.log"))
	return strings.TrimSpace(tail(b))
}
