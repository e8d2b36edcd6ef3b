package server

import (
	"net/http"
	"net/netip"
	"slices"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/server/wire"
)

// nodePeers answers the other live nodes with tenant networks, for node
// name to route their slices and know their replicas' tenants
// (GET /v1/nodes/{name}/peers). A node's reported addresses count only
// for replicas the plan put there and only inside its own slice, so a
// node can't claim another tenant's address.
func (s *Server) nodePeers(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Get)
	if err != nil {
		return err
	}
	set, _, err := s.Current(r.Context())
	if err != nil {
		return err
	}
	type beat struct {
		name string
		net  wire.NodeNetwork
	}
	var others []beat
	s.nodes.mu.Lock()
	now := s.nodes.now()
	for n, b := range s.nodes.seen {
		if n != name && b.hb.Network != nil && s.nodes.state(n, now) == wire.NodeUp {
			others = append(others, beat{n, *b.hb.Network})
		}
	}
	s.nodes.mu.Unlock()
	slices.SortFunc(others, func(a, b beat) int {
		if a.name < b.name {
			return -1
		}
		return 1
	})
	out := wire.NodePeers{Node: name, Peers: []wire.Peer{}}
	for _, o := range others {
		tn, idx, ok := network.NodeIndex(set, o.name)
		if !ok {
			continue
		}
		pool, err := netip.ParsePrefix(tn.Pool)
		if err != nil {
			continue
		}
		sub, err := network.NodeSubnet(pool, tn.Bits(), idx)
		if err != nil {
			continue
		}
		under, err := netip.ParseAddr(o.net.Underlay)
		if err != nil || !under.Is4() || pool.Contains(under) {
			s.log.Warn("node peers: bad underlay address", "node", o.name, "underlay", truncate(o.net.Underlay, 64))
			continue
		}
		p := wire.Peer{Node: o.name, Underlay: under.String(), Subnet: sub.String()}
		specs, err := s.Desired(r.Context(), o.name)
		if err != nil {
			return err
		}
		for _, sp := range specs {
			a, err := netip.ParseAddr(o.net.Addresses[sp.ID])
			if sp.Network == nil || err != nil || !sub.Contains(a) {
				continue
			}
			p.Replicas = append(p.Replicas, wire.PeerReplica{Tenant: sp.Tenant, Workload: sp.Network.Workload, Address: a.String()})
		}
		out.Peers = append(out.Peers, p)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
