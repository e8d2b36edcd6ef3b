package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
)

// gateElector lets the test decide when this server wins and loses.
type gateElector struct {
	mu    sync.Mutex
	win   chan struct{} // closed: the next Campaign wins
	lose  chan struct{} // closed: the term ends
	terms int64
	lead  string
}

func newGate() *gateElector {
	return &gateElector{win: make(chan struct{}), lose: make(chan struct{})}
}

func (g *gateElector) Campaign(ctx context.Context) (*leader.Term, error) {
	g.mu.Lock()
	win, lose := g.win, g.lose
	g.mu.Unlock()
	select {
	case <-win:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.terms++
	g.lead = "me"
	return leader.NewTerm(leader.Info{ID: "me", Term: g.terms}, "", lose, func(context.Context) error { return nil }), nil
}

func (g *gateElector) Leader(context.Context) (leader.Info, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return leader.Info{ID: g.lead, Term: g.terms}, nil
}

func (g *gateElector) Close() error { return nil }

// end ends the current term; the next campaign waits for the gate again.
func (g *gateElector) end() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.lose)
	g.win, g.lose, g.lead = make(chan struct{}), make(chan struct{}), "other"
}

// TestFollowerServesStoredPlan: a server that does not lead writes no
// plan: it shows what the leader stored (nothing yet: every replica waits
// for the leader), refuses heartbeats (only the leader grants node
// leases) and says who leads. Once it wins it plans, stores the plan and
// grants leases; when its term ends it stops writing at once.
func TestFollowerServesStoredPlan(t *testing.T) {
	t.Parallel()
	gate := newGate()
	e := newEnvWith(t, func(c *server.Config) { c.Elector = gate }).seed()
	ctx := t.Context()
	op := e.client("operator")
	placements := func() int {
		vals, _, err := e.store.List(ctx, "/placements")
		if err != nil {
			t.Fatal(err)
		}
		return len(vals)
	}

	res, err := op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Placements) != 0 || len(res.Unplaced) != 7 {
		t.Fatalf("follower's plan before any leader: %d placed, %d unplaced; want 0 and 7", len(res.Placements), len(res.Unplaced))
	}
	for _, u := range res.Unplaced {
		if diff := cmp.Diff([]string{"waiting for the leader to place it"}, u.Reasons); diff != "" {
			t.Errorf("%s[%d] (-want +got):\n%s", u.Workload, u.Replica, diff)
		}
	}
	if n := placements(); n != 0 {
		t.Fatalf("a follower stored %d plans", n)
	}
	if err := op.Heartbeat(ctx, "h1", wire.Heartbeat{}); err == nil || !strings.Contains(err.Error(), "does not lead") {
		t.Errorf("heartbeat to a follower: %v, want 503 (does not lead)", err)
	}
	if l, err := op.Leader(ctx); err != nil || l.Answering || l.ID != "" {
		t.Errorf("leader before the election: %+v, %v", l, err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	close(gate.win)
	for deadline := time.Now().Add(60 * time.Second); placements() != 4; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the leader stored %d plans after 60s, want 4 (one per workload)", placements())
		}
	}
	if res, err := op.Plan(ctx); err != nil || len(res.Placements) != 7 || len(res.Unplaced) != 0 {
		t.Fatalf("leader's plan: %+v, %v", res, err)
	}
	if l, err := op.Leader(ctx); err != nil || !l.Answering || l.ID != "me" {
		t.Errorf("leader: %+v, %v", l, err)
	}
	if lease, err := op.HeartbeatLease(ctx, "h1", wire.Heartbeat{}); err != nil || lease != server.DefaultNodeTimeout*3/4 {
		t.Errorf("heartbeat to the leader: lease %v, %v; want %v", lease, err, server.DefaultNodeTimeout*3/4)
	}

	// The term ends: a new workload is not planned here any more.
	gate.end()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err := op.Leader(ctx); err == nil && !l.Answering {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still leading 60s after the term ended")
		}
	}
	if r := e.do("admin", http.MethodPut, "/v1/tenants/biology/workloads/late", workloadJSON("biology", "late", 2)); r.status != http.StatusCreated {
		t.Fatalf("apply: %d %s", r.status, r.body)
	}
	res, err = op.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var waiting int
	for _, u := range res.Unplaced {
		if u.Workload == "biology/late" {
			waiting++
		}
	}
	if waiting != 2 || len(res.Placements) != 7 || placements() != 4 {
		t.Errorf("after the term: %d placed, %d of late waiting, %d stored plans; want 7, 2, 4", len(res.Placements), waiting, placements())
	}
}

// TestNodesPages: GET /v1/nodes pages by name with ?limit= and ?continue=,
// and the client reads every page.
func TestNodesPages(t *testing.T) {
	t.Parallel()
	_, cs := nodeEnv(t)
	ctx := t.Context()
	op := cs["operator"]
	var names []string
	cont := ""
	for i := 0; ; i++ {
		p, err := op.NodesPage(ctx, 2, cont)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Nodes) > 2 {
			t.Fatalf("page %d: %d nodes, limit 2", i, len(p.Nodes))
		}
		for _, n := range p.Nodes {
			names = append(names, n.Name)
		}
		if cont = p.Continue; cont == "" {
			break
		}
	}
	if diff := cmp.Diff([]string{"n1", "n2", "n3"}, names); diff != "" {
		t.Errorf("paged nodes (-want +got):\n%s", diff)
	}
	all, err := op.Nodes(ctx)
	if err != nil || len(all.Nodes) != 3 || all.Continue != "" {
		t.Errorf("all nodes: %+v, %v", all, err)
	}
	if _, err := op.NodesPage(ctx, 1001, ""); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("limit 1001: %v, want a 400 naming limit", err)
	}
}
