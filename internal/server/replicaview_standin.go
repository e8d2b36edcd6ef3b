package server

import (
	"context"
	"strings"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
)

// STAND-IN until main's replicaView lands (issue 12): every replica the
// plan knows, as pending, with no node report. Delete this file when
// main has the real one.

// replicaView returns the replicas p may see: the operator every one, a
// tenant role its own tenant's, with other tenants' names taken out.
func (s *Server) replicaView(ctx context.Context, p auth.Principal) ([]wire.Replica, error) {
	pl, err := s.planner.current(ctx)
	if err != nil {
		return nil, err
	}
	res := pl.result
	if p.Role != auth.Operator {
		res = tenantView(res, p.Tenant, pl.tenants)
	}
	var out []wire.Replica
	for _, pc := range res.Placements {
		tenant, _, _ := strings.Cut(pc.Workload, "/")
		out = append(out, wire.Replica{Workload: pc.Workload, Tenant: tenant, Index: pc.Replica,
			ID: agent.ReplicaID(pc.Workload, pc.Replica), Node: pc.Node, Host: pc.Host, Tier: pc.Tier,
			ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone},
			Reason:        "its node has not reported it yet", NodeState: s.nodes.statusOf(pc.Node)})
	}
	for _, u := range res.Unplaced {
		tenant, _, _ := strings.Cut(u.Workload, "/")
		out = append(out, wire.Replica{Workload: u.Workload, Tenant: tenant, Index: u.Replica,
			ID:            agent.ReplicaID(u.Workload, u.Replica),
			ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone},
			Reason:        strings.Join(u.Reasons, "; ")})
	}
	return out, nil
}
