package server

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// DefaultNodeTimeout is how long a node may go without a heartbeat before
// it is down and its replicas are re-placed.
const DefaultNodeTimeout = 10 * time.Second

// maxNodes bounds how many distinct nodes the server remembers heartbeats of.
const maxNodes = 10000

// nodes tracks the node agents' heartbeats in memory; registrations and
// status are also kept in the store (nodestore.go). After a restart of the
// control plane every registered node gets a fresh timeout, so a restart
// never re-places a replica by itself, and a node that doesn't come back
// within the timeout is down.
//
// A node is down when it heartbeated before and its last heartbeat is
// older than the timeout. Nodes that never heartbeated count as up: with
// no agents at all (`rung up` on one machine) every node of the topology
// is planned; a node that has not registered yet is not emptied in the
// meantime.
type nodes struct {
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	seen map[string]*nodeBeat
	// published are the log tails of this process's own node agent, by
	// node name (see PublishLogs in logs.go).
	published map[string][]wire.ReplicaLog
	// local are the replica states of this process's own node agent, as
	// of localAt.
	local   []wire.ReplicaState
	localAt time.Time
	// localRuntimes, when localKnown, are the tiers this process's own node
	// agent detects; localNode is its node, "" when it stands for every
	// node that has no agent of its own.
	localRuntimes tenancy.Set
	// localDisk is the local agent's room for volumes (volumedisk.go).
	localDisk *wire.VolumeDisk
	// localNet, when localNetKnown, are the tiers the local agent
	// attaches tenant networks to (PublishLocalNetwork).
	localNet      tenancy.Set
	localNetKnown bool
	// localEmulated are the tiers the local agent only emulates.
	localEmulated []string
	localNode     string
	localKnown    bool
	// saved is when each node's status was last written to the store
	// (nodestore.go).
	saved map[string]time.Time
	// execLocal runs commands in the replicas of this process's own agent,
	// which is execNode ("" for every node without an agent of its own).
	execLocal ExecFunc
	logsLocal LogsFunc
	execNode  string
	// tunnels are the connected remote agents, by node (tunnel.go).
	tunnels map[string]*tunnel
}

type nodeBeat struct {
	last time.Time
	hb   wire.Heartbeat
	// runtimes are hb.Runtimes parsed once (unknown names dropped: an agent
	// newer than this server may know more tiers); reported is false for
	// a heartbeat whose runtimes were null.
	runtimes tenancy.Set
	reported bool
	// netTiers are hb.Network.Tiers parsed (netReported: the node said).
	netTiers    tenancy.Set
	netReported bool
}

// maxRuntimeNames bounds the runtimes a heartbeat may list.
const maxRuntimeNames = 16

func newBeat(at time.Time, hb wire.Heartbeat) *nodeBeat {
	b := &nodeBeat{last: at, hb: hb, reported: hb.Runtimes != nil}
	for _, t := range hb.Runtimes {
		if tier, err := tenancy.ParseTier(v1.Tier(t)); err == nil && tier != tenancy.None {
			b.runtimes = b.runtimes.With(tier)
		}
	}
	if hb.Network != nil && hb.Network.Tiers != nil {
		b.netReported = true
		for _, t := range hb.Network.Tiers {
			if tier, err := tenancy.ParseTier(v1.Tier(t)); err == nil && tier != tenancy.None {
				b.netTiers = b.netTiers.With(tier)
			}
		}
	}
	return b
}

func newNodes(timeout time.Duration, now func() time.Time) *nodes {
	if timeout <= 0 {
		timeout = DefaultNodeTimeout
	}
	return &nodes{timeout: timeout, now: now, seen: map[string]*nodeBeat{}, published: map[string][]wire.ReplicaLog{}, saved: map[string]time.Time{}, tunnels: map[string]*tunnel{}}
}

// beat records a heartbeat of node name; false when too many nodes are
// already known.
func (n *nodes) beat(name string, hb wire.Heartbeat) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.seen[name]; !ok && len(n.seen) >= maxNodes {
		return false
	}
	n.seen[name] = newBeat(n.now(), hb)
	return true
}

// state is name's liveness; n.mu must be held.
func (n *nodes) state(name string, now time.Time) string {
	b, ok := n.seen[name]
	switch {
	case !ok:
		return wire.NodeUnknown
	case now.Sub(b.last) > n.timeout:
		return wire.NodeDown
	}
	return wire.NodeUp
}

// down returns the nodes that are down now, sorted.
func (n *nodes) down() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	var out []string
	for name := range n.seen {
		if n.state(name, now) == wire.NodeDown {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// status lists every node of topo (the topology's node names) and every
// node that heartbeated, sorted by name.
func (n *nodes) status(topo map[string]bool) []wire.NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	names := map[string]bool{}
	for name := range topo {
		names[name] = true
	}
	for name := range n.seen {
		names[name] = true
	}
	out := make([]wire.NodeStatus, 0, len(names))
	for _, name := range slices.Sorted(maps.Keys(names)) {
		st := wire.NodeStatus{Name: name, State: n.state(name, now), InTopology: topo[name]}
		if b, ok := n.seen[name]; ok {
			st.LastHeartbeat, st.Runtimes, st.Replicas, st.Emulated = b.last.UTC(), b.hb.Runtimes, b.hb.Replicas, b.hb.Emulated
			st.VolumeDisk = b.hb.VolumeDisk
		}
		out = append(out, st)
	}
	return out
}

// nodeName reads and checks {name}, then authorizes v on that node.
func (s *Server) nodeName(r *http.Request, v auth.Verb) (string, error) {
	name := r.PathValue("name")
	if !v1.IsDNSLabel(name) {
		return "", badRequest("node %q is not a valid name (a DNS label such as n1)", truncate(name, 64))
	}
	if err := s.authorize(r.Context(), v, auth.Object{Kind: auth.KindNode, Node: name}, name); err != nil {
		return "", err
	}
	return name, nil
}

// heartbeat records that a node agent is alive, with what it runs
// (PUT /v1/nodes/{name}/heartbeat).
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Apply)
	if err != nil {
		return err
	}
	if err := s.grantsLeases(); err != nil {
		return err
	}
	var hb wire.Heartbeat
	if err := decodeJSON(w, r, &hb); err != nil {
		return err
	}
	if len(hb.Runtimes) > maxRuntimeNames {
		return newError(http.StatusBadRequest, wire.CodeInvalid, "runtimes: %d names, at most %d (container, sandbox, vm, host)", len(hb.Runtimes), maxRuntimeNames)
	}
	if len(hb.Decisions) > wire.MaxDecisions {
		return newError(http.StatusBadRequest, wire.CodeInvalid, "decisions: %d, at most %d a heartbeat", len(hb.Decisions), wire.MaxDecisions)
	}
	if hb.VolumeDisk != nil {
		if err := checkDisk(hb.VolumeDisk); err != nil {
			return newError(http.StatusBadRequest, wire.CodeInvalid, "%v", err)
		}
	}
	if hb.Network != nil && len(hb.Network.Addresses) > wire.MaxNodeAddresses {
		return newError(http.StatusBadRequest, wire.CodeInvalid, "network.addresses: %d, at most %d", len(hb.Network.Addresses), wire.MaxNodeAddresses)
	}
	decisions, steps := hb.Decisions, hb.Noisy
	if len(steps) > wire.MaxNoisySteps {
		return newError(http.StatusBadRequest, wire.CodeInvalid, "noisy: %d steps, at most %d a heartbeat", len(steps), wire.MaxNoisySteps)
	}
	hb.Decisions, hb.Noisy = nil, nil // not kept in memory with the heartbeat
	if p := hb.CPUPressure; p != nil && !(*p >= 0 && *p <= 1) {
		hb.CPUPressure = nil
	}
	hb.Logs = boundLogs(hb.Logs) // logs.go
	if hb.Replicas != nil {
		hb.Replicas = boundStates(hb.Replicas) // replicas.go
	}
	was := s.nodes.statusOf(name)
	if !s.nodes.beat(name, hb) {
		return newError(http.StatusTooManyRequests, wire.CodeInvalid, "too many nodes (%d); remove unused node tokens", maxNodes)
	}
	if was != wire.NodeUp {
		s.log.Info("node up", "node", name, "was", was)
	}
	s.saveNode(r.Context(), name, hb, was != wire.NodeUp)
	// Audited once the heartbeat is otherwise accepted; a node whose
	// heartbeat failed sends them again (at least once).
	if err := s.AuditNodeDecisions(r.Context(), name, s.plannedOnly(r.Context(), name, decisions)); err != nil {
		return err
	}
	if err := s.AuditNoisy(r.Context(), name, steps); err != nil {
		return err
	}
	w.Header().Set(wire.LeaseHeader, s.nodes.lease().String())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// digestRE is an image manifest digest as the nodes report them.
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// plannedOnly keeps the decisions a node may make: about tenants with
// replicas planned on it, their images and their replicas, with a real
// digest or none. A node's token can't write another tenant's events; a
// decision about a replica re-placed away since is dropped too (logged).
func (s *Server) plannedOnly(ctx context.Context, node string, ds []policy.Decision) []policy.Decision {
	if len(ds) == 0 {
		return nil
	}
	specs, err := s.Desired(ctx, node)
	if err != nil {
		s.log.Warn("node decisions: dropped", "node", node, "err", err)
		return nil
	}
	subjects := map[string]bool{} // kind, tenant, subject
	for _, sp := range specs {
		subjects[policy.KindImage+"\x00"+sp.Tenant+"\x00"+sp.Image] = true
		subjects[policy.KindWorkload+"\x00"+sp.Tenant+"\x00"+sp.ID] = true
	}
	var out []policy.Decision
	for _, d := range ds {
		if !subjects[d.Kind+"\x00"+d.Tenant+"\x00"+d.Subject] || (d.Digest != "" && !digestRE.MatchString(d.Digest)) {
			s.log.Warn("node decision about nothing planned on the node; dropped", "node", node, "kind", truncate(d.Kind, 32), "tenant", truncate(d.Tenant, 64), "subject", truncate(d.Subject, 128))
			continue
		}
		out = append(out, d)
	}
	return out
}

// statusOf is name's liveness now.
func (n *nodes) statusOf(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state(name, n.now())
}

// nodeReplicas answers the replicas a node must run under the current
// plan (GET /v1/nodes/{name}/replicas).
func (s *Server) nodeReplicas(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Get)
	if err != nil {
		return err
	}
	specs, err := s.Desired(r.Context(), name)
	if err != nil {
		return err
	}
	if specs == nil {
		specs = []replica.Spec{}
	}
	writeJSON(w, http.StatusOK, wire.NodeReplicas{Node: name, Replicas: specs})
	return nil
}

// listNodes answers every node with its liveness (GET /v1/nodes; operators).
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorize(r.Context(), auth.List, auth.Object{Kind: auth.KindNode}, ""); err != nil {
		return err
	}
	view := func(ctx context.Context) ([]wire.NodeStatus, error) {
		set, res, err := s.Current(ctx)
		if err != nil {
			return nil, err
		}
		return s.nodes.withLocal(s.nodes.status(topologyNodes(set)), set, res), nil
	}
	if r.URL.Query().Get("watch") != "" {
		return watchPolled(s, w, r, "nodes", view, func(n wire.NodeStatus) string { return n.Name })
	}
	pg, err := pageOf(r)
	if err != nil {
		return err
	}
	sts, err := view(r.Context())
	if err != nil {
		return err
	}
	out := wire.Nodes{Nodes: sts, Timeout: s.nodes.timeout.String()}
	// Pages follow the names' order, resuming after the last name of the
	// previous page (a node that went meanwhile does not end the list):
	// the view is made at each request, so a node that registers meanwhile
	// may be missed.
	if pg.after != "" {
		i, _ := slices.BinarySearchFunc(sts, pg.after, func(n wire.NodeStatus, name string) int { return strings.Compare(n.Name, name) })
		if i < len(sts) && sts[i].Name == pg.after {
			i++
		}
		out.Nodes = sts[i:]
	}
	if len(out.Nodes) > pg.limit {
		out.Nodes = out.Nodes[:pg.limit]
		out.Continue = next(out.Nodes[len(out.Nodes)-1].Name, 1)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// withLocal completes the nodes' status with what `rung up`'s own agent
// reports: the nodes it runs (its node, or every node of the topology
// without an agent of its own) are up while it reports, with its runtimes
// and the replicas the plan put there; and each node's capacity.
func (n *nodes) withLocal(sts []wire.NodeStatus, set *v1.Set, res *scheduler.Result) []wire.NodeStatus {
	capacity := map[string]*wire.Capacity{}
	for _, t := range set.Topologies {
		for _, nd := range t.Spec.Nodes {
			c := &wire.Capacity{PIDs: nd.Capacity.PIDs}
			if nd.Capacity.CPU != nil {
				c.CPU = nd.Capacity.CPU.String()
			}
			if nd.Capacity.Memory != nil {
				c.Memory = nd.Capacity.Memory.String()
			}
			capacity[nd.Name] = c
		}
	}
	placedOn := map[string]string{} // replica ID → node
	for _, p := range res.Placements {
		placedOn[agent.ReplicaID(p.Workload, p.Replica)] = p.Node
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()
	for i := range sts {
		st := &sts[i]
		st.Capacity = capacity[st.Name]
		if _, remote := n.seen[st.Name]; remote {
			st.Agent = wire.AgentRemote
			continue
		}
		if !n.localKnown || n.localNode != "" && n.localNode != st.Name {
			continue
		}
		st.Agent = wire.AgentLocal
		st.Emulated = n.localEmulated
		st.VolumeDisk = n.localDisk
		st.Runtimes = []string{}
		for t := tenancy.Container; t <= tenancy.Host; t++ {
			if n.localRuntimes.Has(t) {
				st.Runtimes = append(st.Runtimes, t.String())
			}
		}
		if !n.localAt.IsZero() {
			st.LastHeartbeat = n.localAt.UTC()
			st.State = wire.NodeUp
			if now.Sub(n.localAt) > n.timeout {
				st.State = wire.NodeDown
			}
		}
		for _, r := range n.local {
			if placedOn[r.ID] == st.Name || n.localNode == st.Name {
				st.Replicas = append(st.Replicas, r)
			}
		}
	}
	return sts
}

// SetLocalEmulated records the tiers `rung up`'s own node agent runs only
// by emulation (vm under TCG): node status shows them.
func (s *Server) SetLocalEmulated(tiers []string) {
	s.nodes.mu.Lock()
	s.nodes.localEmulated = tiers
	s.nodes.mu.Unlock()
}

// PublishLocalNetwork records the tiers `rung up`'s own node agent
// attaches tenant networks to (remote agents send theirs with
// heartbeats): without it the planner takes the default, container and
// host, and a sandbox that could join its network stays unplaced.
func (s *Server) PublishLocalNetwork(tiers tenancy.Set) {
	s.nodes.mu.Lock()
	s.nodes.localNet, s.nodes.localNetKnown = tiers, true
	s.nodes.mu.Unlock()
}

// SetLocalRuntimes records the tiers `rung up`'s own node agent can run,
// for node (or, when node is "", for every node no agent of its own
// reports on): the planner then offers no tier there that can't run
// (DESIGN §4: a node's runtimes are what its agent detects).
func (s *Server) SetLocalRuntimes(node string, runtimes tenancy.Set) {
	s.nodes.mu.Lock()
	s.nodes.localNode, s.nodes.localRuntimes, s.nodes.localKnown = node, runtimes, true
	s.nodes.mu.Unlock()
}

// runtimeReports are the tiers agents detect: by node for the agents that
// heartbeat and for this process's own one, and all for every other node
// when this process's agent stands for them.
type runtimeReports struct {
	byNode map[string]tenancy.Set
	all    tenancy.Set
	hasAll bool
	// netByNode are the tiers each node attaches tenant networks to, for
	// the nodes that reported them (topology.Networks); netAll, when
	// hasNetAll, those of the local agent standing in for every node.
	netByNode map[string]tenancy.Set
	netAll    tenancy.Set
	hasNetAll bool
	// disks are the nodes' rooms for volumes (volumedisk.go).
	disks diskReports
}

// network returns the tiers node attaches networks to, if it said.
func (r runtimeReports) network(node string) (tenancy.Set, bool) {
	if s, ok := r.netByNode[node]; ok {
		return s, true
	}
	return r.netAll, r.hasNetAll
}

func (r runtimeReports) report(node string) (tenancy.Set, bool) {
	if s, ok := r.byNode[node]; ok {
		return s, true
	}
	return r.all, r.hasAll
}

// digest writes the reports to h in a stable order, so that the planner
// plans again when one changes.
func (r runtimeReports) digest(h io.Writer) {
	for _, n := range slices.Sorted(maps.Keys(r.byNode)) {
		fmt.Fprintf(h, "runtimes\x00%s\x00%d\x00", n, r.byNode[n])
	}
	if r.hasAll {
		fmt.Fprintf(h, "runtimes-all\x00%d\x00", r.all)
	}
	for _, n := range slices.Sorted(maps.Keys(r.netByNode)) {
		fmt.Fprintf(h, "network-tiers\x00%s\x00%d\x00", n, r.netByNode[n])
	}
	if r.hasNetAll {
		fmt.Fprintf(h, "network-tiers-all\x00%d\x00", r.netAll)
	}
	r.disks.digest(h)
}

// runtimes returns what the agents report now.
func (n *nodes) runtimes() runtimeReports {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := runtimeReports{byNode: map[string]tenancy.Set{}, netByNode: map[string]tenancy.Set{}}
	for name, b := range n.seen {
		if b.reported {
			r.byNode[name] = b.runtimes
		}
		if b.netReported {
			r.netByNode[name] = b.netTiers
		}
	}
	r.disks = n.disksLocked()
	if n.localKnown {
		if n.localNode != "" {
			r.byNode[n.localNode] = n.localRuntimes
		} else {
			r.all, r.hasAll = n.localRuntimes, true
		}
		if n.localNetKnown {
			if n.localNode != "" {
				r.netByNode[n.localNode] = n.localNet
			} else {
				r.netAll, r.hasNetAll = n.localNet, true
			}
		}
	}
	return r
}

// topologyNodes is the set of every node name the set's topologies list.
func topologyNodes(set *v1.Set) map[string]bool {
	names := map[string]bool{}
	for _, t := range set.Topologies {
		for _, n := range t.Spec.Nodes {
			names[n.Name] = true
		}
	}
	return names
}

// only keeps the reports of the nodes in names: an agent whose node no
// topology lists has no say, and can't make the planner plan again by
// changing what it reports.
func (r runtimeReports) only(names map[string]bool) runtimeReports {
	for n := range r.byNode {
		if !names[n] {
			delete(r.byNode, n)
		}
	}
	for n := range r.netByNode {
		if !names[n] {
			delete(r.netByNode, n)
		}
	}
	for n := range r.disks.byNode {
		if !names[n] {
			delete(r.disks.byNode, n)
		}
	}
	return r
}

// PublishLocalStates sets the replica states of `rung up`'s own node agent
// (remote agents send theirs with heartbeats).
func (s *Server) PublishLocalStates(states []wire.ReplicaState) {
	states = boundStates(states)
	s.nodes.mu.Lock()
	s.nodes.local, s.nodes.localAt = states, s.now()
	s.nodes.mu.Unlock()
}

// nodeSecret hands a node the values of a Secret that a replica planned on
// it mounts (GET /v1/nodes/{name}/secrets/{tenant}/{secret}): a node token
// reaches no other secret; every read is audited.
func (s *Server) nodeSecret(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Get)
	if err != nil {
		return err
	}
	tenant, secret := r.PathValue("tenant"), r.PathValue("secret")
	if !v1.IsDNSLabel(tenant) || !v1.IsDNSLabel(secret) {
		return badRequest("tenant and secret must be DNS labels")
	}
	specs, err := s.Desired(r.Context(), name)
	if err != nil {
		return err
	}
	mounted := false
	for _, sp := range specs {
		for _, m := range sp.Secrets {
			mounted = mounted || sp.Tenant == tenant && m.Name == secret
		}
	}
	if !mounted {
		return newError(http.StatusNotFound, wire.CodeNotFound, "no replica planned on node %s mounts secret %s/%s", name, tenant, secret)
	}
	data, err := s.SecretData(r.Context(), tenant, secret, "node/"+name)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, data)
	return nil
}
