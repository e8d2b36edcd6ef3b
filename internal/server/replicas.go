package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// Replicas (DESIGN §8): where the plan put each replica, joined with what
// its node's agent reports of it (state, restarts, exit code, last error,
// health, usage). The same view serves the API, the CLI, the dashboard
// and /metrics, so a failing replica looks failing everywhere.

// maxReportedReplicas bounds the replica states one heartbeat may carry.
const maxReportedReplicas = 10000

// boundStates cleans what a node reports about its replicas: the server
// does not trust a node's words, only keeps them in known shapes and
// sizes (unknown states and health become pending and none, errors are
// cut and lose control characters).
func boundStates(states []wire.ReplicaState) []wire.ReplicaState {
	if len(states) > maxReportedReplicas {
		states = states[:maxReportedReplicas]
	}
	out := make([]wire.ReplicaState, 0, len(states))
	for _, r := range states {
		if r.ID == "" || len(r.ID) > 253 || !v1.IsDNSLabel(r.Tenant) {
			continue
		}
		if !slices.Contains(wire.ReplicaStates, r.State) {
			r.State = wire.ReplicaPending
		}
		switch r.Health {
		case wire.HealthNone, wire.HealthStarting, wire.HealthHealthy, wire.HealthUnhealthy:
		default:
			r.Health = wire.HealthNone
		}
		r.LastError = policy.Clean(r.LastError, 1024)
		r.Hash, r.Template = policy.Clean(r.Hash, 64), policy.Clean(r.Template, 64)
		r.Restarts = max(r.Restarts, 0)
		r.Usage = boundUsage(r.Usage) // noisy.go
		r.Noisy = boundSteps(r.Noisy, r.ID)
		if a, err := netip.ParseAddr(r.Address); err != nil || !a.Is4() {
			r.Address = "" // a node reports an address, nothing else
		}
		out = append(out, r)
	}
	return out
}

// reports are the replica states nodes reported: by node and replica ID
// for agents that heartbeat, by ID for this process's own agent (which
// stands for localFor, or for every node when localFor is "").
type reports struct {
	byNode   map[string]map[string]wire.ReplicaState
	local    map[string]wire.ReplicaState
	localFor string
	hasLocal bool
	liveness map[string]string
}

func (n *nodes) reports() reports {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	r := reports{byNode: map[string]map[string]wire.ReplicaState{}, liveness: map[string]string{}}
	for name, b := range n.seen {
		m := make(map[string]wire.ReplicaState, len(b.hb.Replicas))
		for _, st := range b.hb.Replicas {
			m[st.ID] = st
		}
		r.byNode[name] = m
		r.liveness[name] = n.state(name, now)
	}
	if n.local != nil {
		r.hasLocal, r.localFor = true, n.localNode
		r.local = make(map[string]wire.ReplicaState, len(n.local))
		for _, st := range n.local {
			r.local[st.ID] = st
		}
	}
	return r
}

// of is what the node of a placement reports about replica id, and the
// node's liveness.
func (r reports) of(node, id string) (wire.ReplicaState, bool, string) {
	if m, ok := r.byNode[node]; ok {
		st, ok := m[id]
		return st, ok, r.liveness[node]
	}
	if r.hasLocal && (r.localFor == "" || r.localFor == node) {
		st, ok := r.local[id]
		return st, ok, wire.NodeUp
	}
	return wire.ReplicaState{}, false, wire.NodeUnknown
}

// replicaView returns every replica p may see, sorted by workload and
// index: each placement with its node's report, and each unplaced replica
// as pending with the planner's reasons (another tenant's names taken out
// for tenant roles).
func (s *Server) replicaView(ctx context.Context, p auth.Principal) ([]wire.Replica, error) {
	pl, err := s.planner.current(ctx)
	if err != nil {
		return nil, err
	}
	res := pl.result
	if p.Role != auth.Operator {
		res = tenantView(pl.result, p.Tenant, pl.tenants)
	}
	out := joinReplicas(res, s.nodes.reports())
	for i := range out {
		if out[i].Node != "" {
			out[i].Published = pl.published[out[i].Workload]
		}
	}
	return out, nil
}

// joinReplicas joins a plan with the nodes' reports.
func joinReplicas(res *scheduler.Result, rep reports) []wire.Replica {
	out := make([]wire.Replica, 0, len(res.Placements)+len(res.Unplaced))
	for _, pl := range res.Placements {
		tenant, _, _ := strings.Cut(pl.Workload, "/")
		r := wire.Replica{
			Workload: pl.Workload, Tenant: tenant, Index: pl.Replica, ID: agent.ReplicaID(pl.Workload, pl.Replica),
			Node: pl.Node, Host: pl.Host, Tier: pl.Tier,
		}
		st, ok, liveness := rep.of(pl.Node, r.ID)
		r.NodeState = liveness
		switch {
		case ok && st.Tier == pl.Tier:
			r.ReplicaStatus = st.ReplicaStatus
		case ok:
			// The node still runs it on its old tier: the new one is not
			// there yet.
			r.ReplicaStatus = wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone}
			r.Reason = fmt.Sprintf("node %s still runs it as %s; waiting for it to start as %s", pl.Node, st.Tier, pl.Tier)
		default:
			r.ReplicaStatus = wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone}
			r.Reason = "placed on " + pl.Node + "; not reported by its node yet"
		}
		if liveness == wire.NodeDown {
			r.Reason = "node " + pl.Node + " is down: its last report is shown"
		}
		r.Ready = liveness != wire.NodeDown && r.State == wire.ReplicaRunning &&
			(r.Health == wire.HealthHealthy || r.Health == wire.HealthNone)
		out = append(out, r)
	}
	for _, u := range res.Unplaced {
		tenant, _, _ := strings.Cut(u.Workload, "/")
		out = append(out, wire.Replica{
			Workload: u.Workload, Tenant: tenant, Index: u.Replica, ID: agent.ReplicaID(u.Workload, u.Replica),
			ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone},
			Reason:        "not placed: " + strings.Join(u.Reasons, "; "),
		})
	}
	slices.SortFunc(out, func(a, b wire.Replica) int {
		return cmp.Or(strings.Compare(a.Workload, b.Workload), cmp.Compare(a.Index, b.Index))
	})
	return out
}

// listReplicas answers GET /v1/replicas, /v1/tenants/{tenant}/replicas and
// /v1/tenants/{tenant}/workloads/{name}/replicas: another tenant's are a
// 404 (or left out of the list), as for workloads. ?watch=1 streams
// changes (watch.go).
func (s *Server) listReplicas(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name := r.PathValue("tenant"), r.PathValue("name")
	if tenant != "" && !v1.IsDNSLabel(tenant) {
		return badRequest("tenant %q is not a valid name", truncate(tenant, 64))
	}
	if name != "" && !v1.IsDNSLabel(name) {
		return badRequest("workload %q is not a valid name", truncate(name, 64))
	}
	switch {
	case name != "":
		if err := s.authorize(ctx, auth.Get, kindWorkload.object(tenant, name), name); err != nil {
			return err
		}
		if err := s.workloadExists(ctx, tenant, name); err != nil {
			return err
		}
	case tenant != "":
		if err := s.authorize(ctx, auth.List, kindWorkload.object(tenant, ""), ""); err != nil {
			return err
		}
	default:
		if err := s.authorize(ctx, auth.List, kindWorkload.object("", ""), ""); err != nil {
			return err
		}
	}
	keep := func(rp wire.Replica) bool {
		return (tenant == "" || rp.Tenant == tenant) && (name == "" || rp.Workload == tenant+"/"+name)
	}
	p := principal(ctx)
	view := func(ctx context.Context) ([]wire.Replica, error) {
		all, err := s.replicaView(ctx, p)
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(all, func(rp wire.Replica) bool { return !keep(rp) }), nil
	}
	if r.URL.Query().Get("watch") != "" {
		return watchPolled(s, w, r, "replicas", view, func(rp wire.Replica) string { return rp.ID })
	}
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	items, err := view(ctx)
	if err != nil {
		return err
	}
	out := wire.Replicas{Items: items}
	// Pages follow the view's order (workload, index), resuming after the
	// last replica of the previous page: the view is made from the plan
	// at each request, so a replica placed or removed meanwhile may be
	// missed or seen twice.
	if pg.after != "" {
		i := slices.IndexFunc(items, func(rp wire.Replica) bool { return rp.ID == pg.after })
		if i < 0 {
			return newError(http.StatusGone, "expired", "the replica the continue token names is gone; list again from the first page")
		}
		out.Items = items[i+1:]
	}
	if len(out.Items) > pg.limit {
		out.Items = out.Items[:pg.limit]
		out.Continue = next(out.Items[len(out.Items)-1].ID, 1)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// watchInterval is how often a replica watch looks for changes.
const watchInterval = 500 * time.Millisecond

// workloadExists is nil when workload tenant/name is stored, else the
// 404 every missing or hidden workload gets.
func (s *Server) workloadExists(ctx context.Context, tenant, name string) error {
	key := kindWorkload.key(tenant, name)
	if _, err := s.store.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return notFound(v1.KindWorkload, tenant, name)
	} else if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	return nil
}
