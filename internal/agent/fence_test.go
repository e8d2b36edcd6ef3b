package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// leaseAPI is a control plane granting a lease with every heartbeat.
type leaseAPI struct {
	fakeAPI
	mu    sync.Mutex
	lease time.Duration
}

func (a *leaseAPI) HeartbeatLease(ctx context.Context, node string, hb wire.Heartbeat) (time.Duration, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.fakeAPI.Heartbeat(ctx, node, hb); err != nil {
		return 0, err
	}
	return a.lease, nil
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// TestFence: a node whose lease expires stops its replicas then, not
// before, and starts nothing until a heartbeat renews the lease; a node
// that never got a lease (an older control plane) is never fenced.
func TestFence(t *testing.T) {
	ctx := t.Context()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{now: t0}
	spec := replica.Spec{ID: "acme-web-0", Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest"}
	api := &leaseAPI{fakeAPI: fakeAPI{desired: map[string][]replica.Spec{"n1": {spec}}}, lease: 10 * time.Second}
	node := newMemNode()
	r, err := agent.NewRemote("n1", api, node, tenancy.Set(0).With(tenancy.Container), agent.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Once(ctx); err != nil { // lease until t0+10s
		t.Fatal(err)
	}
	running := func() int { recs, _ := node.Records(); return len(recs) }
	if running() != 1 {
		t.Fatal("the replica did not start")
	}

	api.down = true // partitioned from t0 on
	if err := r.Heartbeat(ctx); err == nil {
		t.Fatal("heartbeat through the partition succeeded")
	}
	clk.set(t0.Add(10*time.Second - time.Millisecond))
	if n := r.FenceOnce(ctx); n != 0 || running() != 1 {
		t.Fatalf("before the lease's end: %d stopped, %d running; want none stopped", n, running())
	}
	clk.set(t0.Add(10 * time.Second))
	if n := r.FenceOnce(ctx); n != 1 || running() != 0 {
		t.Fatalf("at the lease's end: %d stopped, %d running; want the replica stopped", n, running())
	}

	// Back: the renewed lease lets the node run what the plan says again.
	api.down = false
	if _, err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if n := r.FenceOnce(ctx); n != 0 || running() != 1 {
		t.Fatalf("after renewal: %d stopped, %d running; want the replica running", n, running())
	}

	// No lease ever granted: never fenced.
	plain := &fakeAPI{desired: map[string][]replica.Spec{"n1": {spec}}}
	node2 := newMemNode()
	r2, err := agent.NewRemote("n1", plain, node2, tenancy.Set(0).With(tenancy.Container), agent.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Once(ctx); err != nil {
		t.Fatal(err)
	}
	clk.set(t0.Add(time.Hour))
	if n := r2.FenceOnce(ctx); n != 0 {
		t.Fatalf("without a lease: %d stopped", n)
	}
}
