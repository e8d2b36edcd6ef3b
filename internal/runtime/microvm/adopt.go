package microvm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm/channel"
)

// AdoptTimeout bounds reconnecting to one running guest when a driver
// starts (a TCG guest on a loaded machine answers slowly).
var AdoptTimeout = 120 * time.Second

// resyncLimit is how much of the old stream a new channel may skip.
const resyncLimit = 8 << 20

// ErrAdopt: a running VM could not be adopted; it was stopped instead.
var ErrAdopt = errors.New("cannot adopt the running vm")

// adoptOrSweep runs when the driver opens its directory. A VMM whose
// driving process is gone (a killed agent) keeps running: when its guest
// runs the workload (the record has its Hello) it is adopted — its
// channel reconnected, its output appended to its log — so the agent finds
// it running as specified, as it does runc and runsc replicas. A VMM that
// can't be adopted (the guest never started the workload, the channel
// does not answer) is stopped, and its replica is reported stopped with an
// unknown exit. A live owner (another process on this directory) keeps
// its own.
func (d *Driver) adoptOrSweep() {
	for _, id := range d.Records() {
		rec, _ := d.readRecord(id)
		if rec.Owner > 0 && rec.OwnerStart != 0 && startTime(rec.Owner) == rec.OwnerStart {
			continue
		}
		if rec.Pid <= 0 || rec.Start == 0 || startTime(rec.Pid) != rec.Start {
			continue
		}
		if rec.Hello.Release != "" {
			ctx, cancel := context.WithTimeout(context.Background(), AdoptTimeout)
			err := d.adopt(ctx, rec)
			cancel()
			if err == nil {
				d.log.Info("adopted a running vm", "replica", id, "pid", rec.Pid)
				continue
			}
			d.log.Warn("stopping a vm that could not be adopted", "replica", id, "pid", rec.Pid, "err", err)
		} else {
			d.log.Warn("stopping a VMM left by an earlier agent before its workload ran", "replica", id, "pid", rec.Pid)
		}
		_ = syscall.Kill(rec.Pid, syscall.SIGKILL)
	}
}

// adopt takes over rec's running VMM: a pidfd to it (so a reused PID is
// never signalled), its channel resynchronized past whatever the previous
// driver left half read, the record's owner rewritten.
func (d *Driver) adopt(ctx context.Context, rec record) (err error) {
	spec, err := bundle.Read(rec.Bundle)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	pidfd, err := unix.PidfdOpen(rec.Pid, 0)
	if err != nil {
		return fmt.Errorf("%w: pidfd: %w", ErrAdopt, err)
	}
	if startTime(rec.Pid) != rec.Start { // the PID was reused between the check and the open
		unix.Close(pidfd)
		return fmt.Errorf("%w: the vmm is gone", ErrAdopt)
	}
	v := &vm{id: rec.ID, bundle: rec.Bundle, dir: d.vmDir(rec.ID), spec: spec, disk: rec.Disk, created: rec.Created,
		status: runtime.Running, done: make(chan struct{}), pid: rec.Pid, pidfd: pidfd, hello: rec.Hello,
		nextExec: uint32(time.Now().UnixNano()) | 1<<31} // ids apart from the previous driver's
	defer func() {
		if err != nil {
			for _, c := range v.closers {
				_ = c.Close()
			}
			if v.conn != nil {
				_ = v.conn.Close()
			}
			unix.Close(pidfd)
		}
	}()
	if err := d.openOutput(v, runtime.IO{}); err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "unix", filepath.Join(v.dir, "run", "channel.sock"))
	if err != nil {
		return fmt.Errorf("%w: channel: %w", ErrAdopt, err)
	}
	v.conn = conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	if err := channel.Write(conn, channel.KindResume, nonce); err != nil {
		return fmt.Errorf("%w: channel: %w", ErrAdopt, err)
	}
	if err := channel.Resync(conn, nonce, resyncLimit); err != nil {
		return fmt.Errorf("%w: no answer from the guest: %w", ErrAdopt, err)
	}
	if !stop() {
		return fmt.Errorf("%w: %w", ErrAdopt, ctx.Err())
	}
	rec.Owner, rec.OwnerStart = os.Getpid(), startTime(os.Getpid())
	if err := d.writeRecord(rec); err != nil {
		return fmt.Errorf("%w: %w", ErrAdopt, err)
	}
	frames := make(chan struct{})
	v.frames = frames
	d.mu.Lock()
	d.vms[v.id] = v
	d.mu.Unlock()
	go d.readFrames(v, conn, frames)
	go d.reapAdopted(v)
	return nil
}

// reapAdopted waits for an adopted VMM (not this process's child: its
// exit status goes to the host's init) through its pidfd, then records
// the end as reap does.
func (d *Driver) reapAdopted(v *vm) {
	fds := []unix.PollFd{{Fd: int32(v.pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
			break
		}
	}
	d.finish(v, errors.New("adopted vmm exited"))
}
