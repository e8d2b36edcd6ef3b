package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// nodesDir holds each registered node's last known status: its runtimes
// and replica states (the agents' status, back in the store), and that it
// registered at all. Heartbeats themselves stay in memory; the record is
// written when a node first registers, when it comes back, and at most
// every timeout/2 after that, so a thousand nodes don't cost a thousand
// fsyncs every interval.
const nodesDir = "/nodes"

// nodeRecord is the stored status of one node.
type nodeRecord struct {
	Name string    `json:"name"`
	Seen time.Time `json:"seen"`
	// Runtimes keeps null (not reported) apart from [] (can run nothing).
	Runtimes []string            `json:"runtimes"`
	Replicas []wire.ReplicaState `json:"replicas,omitempty"`
}

// loadNodes restores the registered nodes after a restart. Their clock
// starts now, not at their stored last heartbeat: a restart of the control
// plane alone never marks a node down, but a node that does not come back
// within the timeout is down (unlike a node that never registered, which
// counts as up).
func (s *Server) loadNodes(ctx context.Context) error {
	vals, _, err := s.store.List(ctx, nodesDir)
	if err != nil {
		return err
	}
	now := s.now()
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	for _, v := range vals {
		var rec nodeRecord
		if err := json.Unmarshal(v.Data, &rec); err != nil || rec.Name == "" {
			s.log.Warn("nodes: unreadable stored status", "key", v.Key, "err", err)
			continue
		}
		if len(s.nodes.seen) >= maxNodes {
			break
		}
		s.nodes.seen[rec.Name] = newBeat(now, wire.Heartbeat{Runtimes: rec.Runtimes, Replicas: rec.Replicas})
	}
	return nil
}

// saveNode writes name's status when due (see nodesDir). Errors are
// logged: liveness works from memory either way.
func (s *Server) saveNode(ctx context.Context, name string, hb wire.Heartbeat, force bool) {
	s.nodes.mu.Lock()
	due := force || s.nodes.saved[name].IsZero() || s.now().Sub(s.nodes.saved[name]) >= s.nodes.timeout/2
	if due {
		s.nodes.saved[name] = s.now()
	}
	s.nodes.mu.Unlock()
	if !due {
		return
	}
	data, err := json.Marshal(nodeRecord{Name: name, Seen: s.now().UTC(), Runtimes: hb.Runtimes, Replicas: hb.Replicas})
	if err != nil {
		return
	}
	if _, err := s.store.Put(ctx, nodesDir+"/"+name, data, store.Any); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Warn("nodes: store status", "node", name, "err", err)
	}
}
