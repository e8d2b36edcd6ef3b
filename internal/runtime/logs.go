package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/logfile"
)

// Replica logs. A long-running replica's stdout and stderr are named FIFOs
// in its private log directory (Dir/logs/ID/stdout, .../stderr, 0700):
//
//   - the runtime gets fresh descriptors made for this replica, never the
//     agent's or a caller's, so what runsc does to them (it fchowns its
//     stdio to the sandbox's user) touches nothing outside the replica;
//   - the container's ends are opened O_RDWR, so there is always a reader
//     and the replica never gets EPIPE or SIGPIPE while no agent runs; the
//     pipe buffer is raised to 1 MiB (F_SETPIPE_SZ) so that a restart of
//     the agent only blocks a replica that writes more than that meanwhile;
//   - being named, they outlive the agent: a driver opened again re-attaches
//     a copier to the FIFOs of every container still there (adoptLogs).
//
// A copier turns what comes out of the FIFOs into CRI-format records
// (package logfile) in current.log, rotated at a cap. Delete moves the
// run's log to previous.log, so the previous run's log survives one
// restart; PurgeLogs deletes the directory. The copier of a replica holds
// an flock on Dir/logs/ID/lock, so two processes (an agent and a CLI
// opening the same data directory) never both read one FIFO.

// pipeSize is the FIFO buffer a replica can fill while no copier runs.
const pipeSize = 1 << 20

var streams = [2]logfile.Stream{logfile.Stdout, logfile.Stderr}

// copier copies one replica's FIFOs into its log.
type copier struct {
	readers [2]*os.File
	done    chan struct{}
}

// stop closes the FIFOs' read ends, which ends the copy, and waits for it.
func (c *copier) stop() {
	for _, r := range c.readers {
		r.Close()
	}
	<-c.done
}

// wait waits for the copy to end by itself (every writer closed) for up to
// d, then stops it.
func (c *copier) wait(d time.Duration) {
	select {
	case <-c.done:
	case <-time.After(d):
		c.stop()
	}
}

func (d *OCI) logDir(id string) string { return filepath.Join(d.logs, id) }

func (d *OCI) currentLog(id string) string {
	return filepath.Join(d.logDir(id), CurrentLog)
}

func (d *OCI) previousLog(id string) string {
	return filepath.Join(d.logDir(id), PreviousLog)
}

// The files of a replica's log directory, in every driver: the running or
// last run's log (rotated to NAME.1 at a cap) and the run's before that.
const (
	CurrentLog  = "current.log"
	PreviousLog = "previous.log"
)

// ReadLogDir opens the log, chosen by o, of the replica whose log
// directory is dir (CurrentLog, or PreviousLog with o.Previous);
// ErrNotFound when there is none.
func ReadLogDir(ctx context.Context, dir string, o logfile.ReadOptions) (io.ReadCloser, error) {
	p := filepath.Join(dir, CurrentLog)
	if o.Previous {
		p = filepath.Join(dir, PreviousLog)
	}
	rc, err := logfile.Open(ctx, p, o)
	if errors.Is(err, logfile.ErrNoLog) {
		return nil, ErrNotFound
	}
	return rc, err
}

// lockLogs takes the replica's copier lock without waiting; ok is false
// when another copier holds it.
func lockLogs(dir string) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return f, true, nil
}

// logPipes makes replica id's FIFOs and starts their copier. It returns
// the ends for the runtime, opened O_RDWR; the caller closes its copies
// once the runtime holds them.
func (d *OCI) logPipes(id string) (ends [2]*os.File, c *copier, err error) {
	dir := d.logDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ends, nil, err
	}
	lock, ok, err := lockLogs(dir)
	if err != nil {
		return ends, nil, err
	}
	if !ok {
		return ends, nil, fmt.Errorf("another process copies the log of %s: %w", id, ErrExists)
	}
	// A run that ended without Delete (the agent and its container died
	// together): its log becomes the previous one.
	if err := d.retireLog(id); err != nil {
		lock.Close()
		return ends, nil, err
	}
	closeEnds := func() {
		for _, f := range ends {
			if f != nil {
				f.Close()
			}
		}
	}
	for i, s := range streams {
		p := filepath.Join(dir, string(s))
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			closeEnds()
			lock.Close()
			return ends, nil, err
		}
		if err := unix.Mkfifo(p, 0o600); err != nil {
			closeEnds()
			lock.Close()
			return ends, nil, fmt.Errorf("mkfifo %s: %w", p, err)
		}
		// O_RDWR does not wait for a reader; it is the reader that keeps
		// the replica's writes from failing while no copier runs.
		if ends[i], err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
			closeEnds()
			lock.Close()
			return ends, nil, err
		}
		// Best effort: the default 64 KiB still works, only sooner full.
		_, _ = unix.FcntlInt(ends[i].Fd(), unix.F_SETPIPE_SZ, pipeSize)
	}
	c, err = d.attach(id, lock)
	if err != nil {
		closeEnds()
		return ends, nil, err
	}
	return ends, c, nil
}

// attach starts a copier from id's FIFOs into its current log; it owns
// lock from then on.
func (d *OCI) attach(id string, lock *os.File) (*copier, error) {
	c := &copier{done: make(chan struct{})}
	for i, s := range streams {
		// Non-blocking: no wait for a writer; the copy ends at EOF, once
		// every writer (the replica's processes) has closed its end.
		r, err := os.OpenFile(filepath.Join(d.logDir(id), string(s)), os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			for _, r := range c.readers[:i] {
				r.Close()
			}
			lock.Close()
			return nil, err
		}
		c.readers[i] = r
	}
	w, err := logfile.Create(d.currentLog(id), d.logMax)
	if err != nil {
		for _, r := range c.readers {
			r.Close()
		}
		lock.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() {
			sw := w.Stream(s)
			if _, err := io.Copy(sw, c.readers[i]); err != nil && !errors.Is(err, os.ErrClosed) {
				d.log.Warn("copy replica output", "runtime", d.kind, "id", id, "stream", s, "err", err)
			}
			_ = sw.Close()
		})
	}
	d.mu.Lock()
	d.copiers[id] = c
	d.mu.Unlock()
	go func() {
		wg.Wait()
		_ = w.Close()
		for _, r := range c.readers {
			r.Close()
		}
		d.mu.Lock()
		if d.copiers[id] == c {
			delete(d.copiers, id)
		}
		d.mu.Unlock()
		lock.Close()
		close(c.done)
	}()
	return c, nil
}

// copierOf returns this process's copier of id, if any.
func (d *OCI) copierOf(id string) *copier {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.copiers[id]
}

// adoptInterval bounds how often State looks for containers whose output
// nobody copies.
const adoptInterval = 2 * time.Second

// adoptLogs re-attaches a copier to the FIFOs of every container that has
// none: after a restart of the agent, or once another process that held
// them (see lockLogs) exits.
func (d *OCI) adoptLogs() {
	d.mu.Lock()
	if time.Since(d.adoptedAt) < adoptInterval {
		d.mu.Unlock()
		return
	}
	d.adoptedAt = time.Now()
	d.mu.Unlock()
	entries, err := os.ReadDir(d.logs)
	if err != nil {
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || !validID(id) || d.copierOf(id) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d.logDir(id), string(logfile.Stdout))); err != nil {
			continue
		}
		if ok, err := d.exists(id); err != nil || !ok {
			continue
		}
		lock, ok, err := lockLogs(d.logDir(id))
		if err != nil || !ok {
			continue
		}
		if _, err := d.attach(id, lock); err != nil {
			d.log.Warn("re-attach replica log", "runtime", d.kind, "id", id, "err", err)
			continue
		}
		d.log.Debug("re-attached replica log", "runtime", d.kind, "id", id)
	}
}

// retireLog moves id's current log (both segments) to previous.log,
// replacing the one before, and removes its FIFOs. Without a current log
// the previous one stays.
func (d *OCI) retireLog(id string) error {
	cur, prev := d.currentLog(id), d.previousLog(id)
	_, err1 := os.Lstat(cur)
	_, err2 := os.Lstat(cur + ".1")
	if err1 == nil || err2 == nil {
		for _, p := range []string{prev, prev + ".1"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		for _, suffix := range []string{".1", ""} {
			if err := os.Rename(cur+suffix, prev+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	for _, s := range streams {
		if err := os.Remove(filepath.Join(d.logDir(id), string(s))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// dropCurrentLog removes the log of a run that never started (a failed
// create); the previous run's log stays.
func (d *OCI) dropCurrentLog(id string) {
	for _, p := range []string{d.currentLog(id), d.currentLog(id) + ".1"} {
		_ = os.Remove(p)
	}
	for _, s := range streams {
		_ = os.Remove(filepath.Join(d.logDir(id), string(s)))
	}
}

// ReadLogs returns replica id's output as it wrote it, chosen by o (see
// logfile.ReadOptions): the running or last run's log, or with o.Previous
// the run's before that. ErrNotFound when there is none.
func (d *OCI) ReadLogs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%s logs %q: %w", d.kind, id, ErrInvalidID)
	}
	rc, err := ReadLogDir(ctx, d.logDir(id), o)
	if err != nil {
		return nil, fmt.Errorf("%s logs %s: %w", d.kind, id, err)
	}
	return rc, nil
}

// HasLogs reports whether replica id has a log here, current or previous.
func (d *OCI) HasLogs(id string) bool {
	if !validID(id) {
		return false
	}
	_, err := os.Stat(d.logDir(id))
	return err == nil
}

// PurgeLogs deletes every log of replica id (its current and previous
// runs'); for a replica that is gone for good. A copier of a container
// that still runs is stopped.
func (d *OCI) PurgeLogs(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%s purge logs %q: %w", d.kind, id, ErrInvalidID)
	}
	if c := d.copierOf(id); c != nil {
		c.stop()
	}
	if err := os.RemoveAll(d.logDir(id)); err != nil {
		return fmt.Errorf("%s purge logs %s: %w", d.kind, id, err)
	}
	return nil
}
