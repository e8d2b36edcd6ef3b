package agent

import (
	"context"
	"sync"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// LeaseAPI is a control plane that grants a lease with each heartbeat
// (*client.Client is one): the node may run its replicas for that long
// after sending the heartbeat, and must stop them when it can't renew in
// time (DESIGN §11, fencing). The control plane re-places a silent node's
// replicas only after its node timeout, which is longer than the lease, so
// a partitioned node never runs a replica that also runs elsewhere.
type LeaseAPI interface {
	HeartbeatLease(ctx context.Context, node string, hb wire.Heartbeat) (time.Duration, error)
}

// fenceCheck is how often an agent looks at its lease.
const fenceCheck = 100 * time.Millisecond

// lease is what the control plane granted last. Its times are read with
// time.Now's monotonic clock, so a wall-clock step changes nothing.
type lease struct {
	mu      sync.Mutex
	granted bool      // a lease was granted once: the node is fenced by it
	until   time.Time // when the latest lease ends
	fenced  bool      // the replicas were stopped for its expiry
}

// renew extends the lease to sent+d (never shortens it).
func (l *lease) renew(sent time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.granted = true
	if u := sent.Add(d); u.After(l.until) {
		l.until = u
	}
}

// expired is true once a granted lease has run out at now.
func (l *lease) expired(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.granted && !now.Before(l.until)
}

// send heartbeats, renewing the lease when the control plane grants one.
// The lease counts from before the request left: however long the answer
// took, the node's lease ends before the control plane's timeout does.
func (r *Remote) send(ctx context.Context, hb wire.Heartbeat) error {
	la, ok := r.api.(LeaseAPI)
	if !ok {
		return r.api.Heartbeat(ctx, r.node, hb)
	}
	sent := r.agent.now()
	d, err := la.HeartbeatLease(ctx, r.node, hb)
	if err != nil {
		return err
	}
	if d > 0 {
		r.lease.renew(sent, d)
		r.lease.mu.Lock()
		was := r.lease.fenced
		r.lease.fenced = false
		r.lease.mu.Unlock()
		if was {
			r.log.Warn("lease renewed: the node runs what the control plane plans again")
		}
	}
	return nil
}

// fence stops every replica of the node once its lease has expired, and
// keeps the node empty (a reconciliation in flight may still start one)
// until a heartbeat renews the lease.
func (r *Remote) fence(ctx context.Context, check time.Duration) {
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.fenceOnce(ctx)
	}
}

// fenceOnce stops every replica if the lease has expired; it returns how
// many it stopped.
func (r *Remote) fenceOnce(ctx context.Context) int {
	if !r.lease.expired(r.agent.now()) {
		return 0
	}
	r.lease.mu.Lock()
	first := !r.lease.fenced
	r.lease.fenced = true
	r.lease.mu.Unlock()
	recs, err := r.replicas.Records()
	if err != nil {
		r.log.Error("fence: list replicas", "err", err)
		return 0
	}
	if first {
		r.log.Error("lease expired: the control plane can't be reached; stopping every replica of the node", "replicas", len(recs))
	}
	n := 0
	for _, rec := range recs {
		if err := r.replicas.Remove(ctx, rec.Spec.ID); err != nil {
			if ctx.Err() == nil {
				r.log.Error("fence: stop replica", "replica", rec.Spec.ID, "err", err)
			}
			continue
		}
		n++
	}
	return n
}
