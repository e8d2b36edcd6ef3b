package server

import (
	"net/http"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

// clusterTopology refuses a Topology apply when the nodes come from a
// Kubernetes cluster (rung up --backend kubernetes): the planner would
// ignore it, and a manifest silently ignored is worse than one refused.
func (s *Server) clusterTopology(k kind, name string) error {
	if k.name != v1.KindTopology || s.planner.cluster == nil {
		return nil
	}
	return newError(http.StatusUnprocessableEntity, wire.CodeInvalid,
		"Topology %s: rung runs on a Kubernetes cluster (--backend kubernetes): its nodes and failure domains are the cluster's nodes and their labels (topology.kubernetes.io/region, topology.kubernetes.io/zone, rung.dev/<level>), so a Topology cannot be applied; label the nodes instead", truncate(name, 64))
}
