package agent

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
)

// prober runs one replica's health check in the background, inside the
// replica (Execer), as Docker does: a check that exits 0 passes, one that
// fails or outlives its timeout fails, Retries failures in a row make the
// replica unhealthy, and failures within StartPeriod of the start don't
// count.
type prober struct {
	hc      replica.Healthcheck
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex
	fails  int
	passed bool
	last   string // what the last failing check said
}

// firstCheck is how soon after a start the first check runs: a replica is
// not left "starting" for a whole interval.
const firstCheck = 500 * time.Millisecond

// maxCheckOutput bounds what a failing check's output adds to lastError.
const maxCheckOutput = 512

func startProber(ctx context.Context, node Execer, id string, hc replica.Healthcheck, now func() time.Time) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{hc: hc.WithDefaults(), started: now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		wait := firstCheck
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = p.hc.Interval
			p.check(ctx, node, id, now)
		}
	}()
	return p
}

func (p *prober) check(ctx context.Context, node Execer, id string, now func() time.Time) {
	cctx, cancel := context.WithTimeout(ctx, p.hc.Timeout)
	defer cancel()
	var out bytes.Buffer
	w := &capWriter{buf: &out, n: maxCheckOutput}
	code, err := node.Exec(cctx, id, p.hc.Command, runtime.ExecIO{Stdout: w, Stderr: w})
	if ctx.Err() != nil {
		return // stopped meanwhile: no verdict
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && code == 0 {
		p.fails, p.passed, p.last = 0, true, ""
		return
	}
	why := fmt.Sprintf("exit code %d", code)
	switch {
	case cctx.Err() != nil:
		why = fmt.Sprintf("timed out after %s", p.hc.Timeout)
	case err != nil:
		why = plain(err)
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		why += ": " + s
	}
	p.last = why
	if !p.passed && now().Sub(p.started) < p.hc.StartPeriod {
		return // still starting: doesn't count
	}
	p.fails++
}

// verdict is the replica's health now.
func (p *prober) verdict() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.fails >= p.hc.Retries:
		return wire.HealthUnhealthy
	case p.passed:
		return wire.HealthHealthy
	}
	return wire.HealthStarting
}

// failure says why the replica is unhealthy.
func (p *prober) failure() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("health check %q failed %d times in a row: %s", strings.Join(p.hc.Command, " "), p.fails, p.last)
}

// stop ends the checks; one still running is killed by its context.
func (p *prober) stop() { p.cancel() }

// capWriter keeps the first n bytes.
type capWriter struct {
	buf *bytes.Buffer
	n   int
}

func (c *capWriter) Write(b []byte) (int, error) {
	if k := min(len(b), c.n-c.buf.Len()); k > 0 {
		c.buf.Write(b[:k])
	}
	return len(b), nil
}
