package server

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	v1 "rung.dev/rung/api/v1"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
)

// Replica logs (`rung logs`). Node agents send the tails of their
// replicas' log files with their heartbeats; this process's own agent
// (`rung up --agent`) hands them over with PublishLogs. The server keeps
// only the latest tails, in memory: after a restart logs reappear with the
// next heartbeat.

// maxLogLines bounds ?tail=.
const maxLogLines = 10000

// localNode names this machine's agent when it stands in for every node.
const localNode = "local"

// PublishLogs records the log tails of this process's own node agent,
// replacing what it published before. node is the topology node the agent
// is, or "" when it stands in for every node of the plan.
func (s *Server) PublishLogs(node string, logs []wire.ReplicaLog) {
	logs = boundLogs(logs)
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	if len(logs) == 0 {
		delete(s.nodes.published, node)
		return
	}
	s.nodes.published[node] = logs
}

// boundLogs drops what exceeds the heartbeat's bounds: replicas beyond
// wire.MaxLogReplicas, bytes before the last wire.MaxLogTail of each.
func boundLogs(logs []wire.ReplicaLog) []wire.ReplicaLog {
	if len(logs) > wire.MaxLogReplicas {
		logs = logs[:wire.MaxLogReplicas]
	}
	out := make([]wire.ReplicaLog, 0, len(logs))
	for _, l := range logs {
		if !v1.IsDNSLabel(l.Tenant) || l.ID == "" || len(l.ID) > 253 {
			continue
		}
		if n := len(l.Data); n > wire.MaxLogTail {
			l.Data, l.Truncated = l.Data[n-wire.MaxLogTail:], true
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// logSource is one node's log tails; trusted ones come from this process.
type logSource struct {
	node    string
	trusted bool
	logs    []wire.ReplicaLog
}

func (n *nodes) logSources() []logSource {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []logSource
	for node, logs := range n.published {
		out = append(out, logSource{node: node, trusted: true, logs: logs})
	}
	for node, b := range n.seen {
		if len(b.hb.Logs) > 0 {
			out = append(out, logSource{node: node, logs: b.hb.Logs})
		}
	}
	// Trusted first, then by node, so the answer does not depend on map order.
	slices.SortFunc(out, func(a, b logSource) int {
		if a.trusted != b.trusted {
			if a.trusted {
				return -1
			}
			return 1
		}
		return strings.Compare(a.node, b.node)
	})
	return out
}

// replicaOrdinal returns ord when id is agent.ReplicaID(tenant/name, ord).
func replicaOrdinal(id, tenant, name string) (int, bool) {
	prefix := strings.TrimSuffix(agent.ReplicaID(tenant+"/"+name, 0), "0")
	digits, ok := strings.CutPrefix(id, prefix)
	if !ok || digits == "" || len(digits) > 6 || strings.Trim(digits, "0123456789") != "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	ord, err := strconv.Atoi(digits)
	return ord, err == nil
}

// workloadLogs answers the tails of a workload's replicas' logs
// (GET /v1/tenants/{tenant}/workloads/{name}/logs?replica=N&tail=K), with
// the access of reading the workload: another tenant's workload is the
// 404 of a missing one; node tokens may not.
func (s *Server) workloadLogs(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, _, err := s.authorizePath(r, auth.Get, v1.KindWorkload)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	only, tail := -1, 0
	if v := q.Get("replica"); v != "" {
		if only, err = strconv.Atoi(v); err != nil || only < 0 {
			return badRequest("replica %q: want a replica number, 0 or more", truncate(v, 32))
		}
	}
	if v := q.Get("tail"); v != "" {
		if tail, err = strconv.Atoi(v); err != nil || tail < 0 || tail > maxLogLines {
			return badRequest("tail %q: want a number of lines from 0 (all) to %d", truncate(v, 32), maxLogLines)
		}
	}
	if err := s.workloadExists(ctx, tenant, name); err != nil {
		return err
	}
	out, err := s.replicaLogs(ctx, tenant, name, only, tail)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// replicaLogs gathers the log tails of tenant/name's replicas (only one:
// only >= 0), the last tail lines of each (all: 0), for a caller that has
// checked access to the workload.
func (s *Server) replicaLogs(ctx context.Context, tenant, name string, only, tail int) (wire.WorkloadLogs, error) {
	_, res, err := s.Current(ctx)
	if err != nil {
		return wire.WorkloadLogs{}, err
	}
	// Where the plan puts each replica: a remote node's logs count only
	// for replicas placed on it, so no node can speak for another's.
	placed := map[int]string{}
	for _, p := range res.Placements {
		if p.Workload == tenant+"/"+name {
			placed[p.Replica] = p.Node
		}
	}
	found := map[int]wire.ReplicaLines{}
	for _, src := range s.nodes.logSources() {
		for _, l := range src.logs {
			if l.Tenant != tenant {
				continue
			}
			ord, ok := replicaOrdinal(l.ID, tenant, name)
			if !ok || (only >= 0 && ord != only) {
				continue
			}
			if _, dup := found[ord]; dup {
				continue
			}
			node, isPlaced := placed[ord]
			switch {
			case src.trusted && src.node != "":
				node = src.node
			case src.trusted && !isPlaced:
				node = localNode
			case src.trusted:
			case !isPlaced || node != src.node:
				continue
			}
			found[ord] = wire.ReplicaLines{Replica: ord, Node: node, Lines: lastLines(l.Data, tail), Truncated: l.Truncated}
		}
	}
	// Placed replicas that reported nothing yet are listed with no lines.
	for ord, node := range placed {
		if _, ok := found[ord]; !ok && (only < 0 || ord == only) {
			found[ord] = wire.ReplicaLines{Replica: ord, Node: node, Lines: []string{}}
		}
	}
	out := wire.WorkloadLogs{Tenant: tenant, Workload: name, Replicas: []wire.ReplicaLines{}}
	for _, ord := range slices.Sorted(maps.Keys(found)) {
		out.Replicas = append(out.Replicas, found[ord])
	}
	return out, nil
}

// lastLines splits data in lines and keeps the last n (all for n == 0).
func lastLines(data string, n int) []string {
	data = strings.TrimSuffix(data, "\n")
	if data == "" {
		return []string{}
	}
	lines := strings.Split(data, "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
