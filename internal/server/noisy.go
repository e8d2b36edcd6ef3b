package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"

	"github.com/prometheus/client_golang/prometheus"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/tenancy"
)

// Noisy neighbours (DESIGN §12): nodes run the ladder (agent/noisy.go) and
// report each step; the control plane audits them, counts them, and acts
// on move: the replica is placed again, off the node it was noisy on.

// movesDir holds the moves asked by nodes' ladders:
// /noisymoves/TENANT/NAME/INDEX → moveDoc. The planner keeps the replica
// off From while the record exists (ignored once its workload is gone).
const movesDir = "/noisymoves"

// moveDoc is one noisy replica's move.
type moveDoc struct {
	Workload string    `json:"workload"`
	Replica  int       `json:"replica"`
	From     string    `json:"from"`
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
	// Isolate raises the workload to the host tier (a host of its own)
	// instead of only keeping the replica off From.
	Isolate bool `json:"isolate,omitempty"`
}

// resultApplied is the audit result of a ladder step a node applied.
const resultApplied = "applied"

// noisyActions are the step actions a node may report.
var noisyActions = []string{"throttle", "report", "move", "isolate", "release"}

// boundUsage keeps a node's usage figures in known ranges.
func boundUsage(u *wire.Usage) *wire.Usage {
	if u == nil {
		return nil
	}
	frac := func(f float64) float64 {
		if math.IsNaN(f) || f < 0 {
			return 0
		}
		return min(f, 1)
	}
	pos := func(f float64) float64 {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return 0
		}
		return f
	}
	out := &wire.Usage{MilliCPU: max(u.MilliCPU, 0), Memory: max(u.Memory, 0), PIDs: max(u.PIDs, 0),
		CPUSeconds: pos(u.CPUSeconds), Throttled: frac(u.Throttled), ThrottledSeconds: pos(u.ThrottledSeconds),
		OOMKills: max(u.OOMKills, 0), ReadBytes: max(u.ReadBytes, 0), WriteBytes: max(u.WriteBytes, 0)}
	if u.Pressure != nil {
		p := frac(*u.Pressure)
		out.Pressure = &p
	}
	return out
}

// boundSteps keeps at most wire.MaxNoisySteps well-formed steps about
// replica id (any replica when id is "").
func boundSteps(steps []wire.NoisyStep, id string) []wire.NoisyStep {
	var out []wire.NoisyStep
	for _, s := range steps {
		if !slices.Contains(noisyActions, s.Action) || !v1.IsDNSLabel(s.Tenant) || s.Replica == "" || len(s.Replica) > 253 || id != "" && s.Replica != id {
			continue
		}
		s.Reason, s.Error, s.Victim = policy.Clean(s.Reason, 512), policy.Clean(s.Error, 512), policy.Clean(s.Victim, 253)
		s.UsedMilliCPU, s.RequestMilliCPU = max(s.UsedMilliCPU, 0), max(s.RequestMilliCPU, 0)
		s.Starved, s.Threshold = max(0, min(s.Starved, 1)), max(0, min(s.Threshold, 1))
		if math.IsNaN(s.Starved) || math.IsNaN(s.Threshold) {
			s.Starved, s.Threshold = 0, 0
		}
		out = append(out, s)
	}
	return out[max(0, len(out)-wire.MaxNoisySteps):]
}

// AuditNoisy audits the ladder steps node took (one entry each, by the
// node's identity, with the figures that triggered it) and records the
// moves, so that the next plan places those replicas elsewhere. Steps
// about replicas not planned on the node are dropped (logged): a node's
// token can't move another node's replicas. node "" is `rung up`'s own
// agent, standing for every node without an agent.
func (s *Server) AuditNoisy(ctx context.Context, node string, steps []wire.NoisyStep) error {
	steps = boundSteps(steps, "")
	if len(steps) == 0 {
		return nil
	}
	pl, err := s.planner.current(ctx)
	if err != nil {
		return err
	}
	where := map[string]scheduler.Placement{} // replica ID → placement
	for _, p := range pl.result.Placements {
		if node == "" || p.Node == node {
			where[agent.ReplicaID(p.Workload, p.Replica)] = p
		}
	}
	actor := "node/" + node
	if node == "" {
		actor = "node/local"
	}
	for _, st := range steps {
		p, ok := where[st.Replica]
		if !ok || !strings.HasPrefix(p.Workload, st.Tenant+"/") {
			s.log.Warn("noisy step about a replica not planned on the node; dropped", "node", node, "replica", st.Replica)
			continue
		}
		result, msg := resultApplied, fmt.Sprintf("on node %s: %s", p.Node, st.Reason)
		if st.Error != "" {
			result, msg = wire.CodeInvalid, msg+": failed: "+st.Error
		}
		var ops []store.Op
		if (st.Action == "move" || st.Action == "isolate") && st.Error == "" {
			iso := st.Action == "isolate"
			doc, _ := json.Marshal(moveDoc{Workload: p.Workload, Replica: p.Replica, From: p.Node, At: st.At, Reason: st.Reason, Isolate: iso})
			ops = append(ops, store.PutOp(fmt.Sprintf("%s/%s/%d", movesDir, p.Workload, p.Replica), doc, store.Any))
			msg += "; placed again off " + p.Node
			if iso {
				msg += ", its workload raised to the host tier (a host of its own)"
			}
		}
		e := Entry{Actor: actor, Action: "noisy." + st.Action, Kind: "Replica", Tenant: st.Tenant, Name: st.Replica, Result: result, Message: msg}
		if _, err := s.commit(ctx, e, ops...); err != nil {
			return err
		}
		s.metrics.noisySteps.WithLabelValues(st.Action).Inc()
	}
	return nil
}

// moves turns the stored moves into the scheduler's Avoid list for prob,
// and the node each moved replica left, by "TENANT/NAME[i]".
func moves(vals []store.Value, prob *scheduler.Problem) ([]scheduler.Avoid, map[string]string) {
	wl := map[string]int{}
	for i := range prob.Workloads {
		wl[prob.Key(i)] = i
	}
	var out []scheduler.Avoid
	from := map[string]string{} // "TENANT/NAME[i]" → node
	for _, v := range vals {
		var m moveDoc
		if json.Unmarshal(v.Data, &m) != nil {
			continue
		}
		w, ok := wl[m.Workload]
		n, nok := prob.Topology.Node(m.From)
		if !ok || !nok {
			continue
		}
		out = append(out, scheduler.Avoid{Workload: w, Replica: m.Replica, Node: n})
		from[fmt.Sprintf("%s[%d]", m.Workload, m.Replica)] = m.From
		if m.Isolate && prob.Workloads[w].Floor < tenancy.Host {
			// The planner's own host floor: the replicas get hosts of
			// their own (no other tenant's replica beside them).
			prob.Workloads[w].Floor = tenancy.Host
			prob.Workloads[w].FloorSource = fmt.Sprintf("noisy neighbour: replica %d isolated (%s)", m.Replica, m.Reason)
			for r := range prob.Workloads[w].Replicas {
				from[fmt.Sprintf("%s[%d]", m.Workload, r)] = "*"
			}
		}
	}
	return out, from
}

// withoutMoved drops from prev the placements of replicas on the node
// they were moved off, so that they are placed again.
func withoutMoved(prev *scheduler.Result, from map[string]string) {
	if len(from) == 0 {
		return
	}
	prev.Placements = slices.DeleteFunc(prev.Placements, func(p scheduler.Placement) bool {
		f := from[fmt.Sprintf("%s[%d]", p.Workload, p.Replica)]
		return f == p.Node || f == "*"
	})
}

// Per-replica usage series (DESIGN §12), with the replica collector's
// labels tenant, workload (name) and replica (index): one series per
// replica and metric, bounded like theirs by the tenants' replica quotas.
var (
	descUsage = []struct {
		d  *prometheus.Desc
		vt prometheus.ValueType
		f  func(u *wire.Usage) float64
	}{
		{prometheus.NewDesc("rung_replica_cpu_seconds_total", "CPU time each replica used (its cgroup).", replicaLabels, nil),
			prometheus.CounterValue, func(u *wire.Usage) float64 { return u.CPUSeconds }},
		{prometheus.NewDesc("rung_replica_cpu_cores", "CPU each replica used over its node's last interval, in cores.", replicaLabels, nil),
			prometheus.GaugeValue, func(u *wire.Usage) float64 { return float64(u.MilliCPU) / 1000 }},
		{prometheus.NewDesc("rung_replica_cpu_throttled_seconds_total", "Time each replica's tasks were throttled by its CFS quota.", replicaLabels, nil),
			prometheus.CounterValue, func(u *wire.Usage) float64 { return u.ThrottledSeconds }},
		{prometheus.NewDesc("rung_replica_cpu_throttled_ratio", "Fraction of CFS periods each replica was throttled over its node's last interval.", replicaLabels, nil),
			prometheus.GaugeValue, func(u *wire.Usage) float64 { return u.Throttled }},
		{prometheus.NewDesc("rung_replica_memory_bytes", "Memory each replica's cgroup uses.", replicaLabels, nil),
			prometheus.GaugeValue, func(u *wire.Usage) float64 { return float64(u.Memory) }},
		{prometheus.NewDesc("rung_replica_oom_kills_total", "The kernel's OOM kills in each replica's cgroup.", replicaLabels, nil),
			prometheus.CounterValue, func(u *wire.Usage) float64 { return float64(u.OOMKills) }},
		{prometheus.NewDesc("rung_replica_pids", "Tasks in each replica's cgroup.", replicaLabels, nil),
			prometheus.GaugeValue, func(u *wire.Usage) float64 { return float64(u.PIDs) }},
		{prometheus.NewDesc("rung_replica_io_read_bytes_total", "Block I/O each replica read.", replicaLabels, nil),
			prometheus.CounterValue, func(u *wire.Usage) float64 { return float64(u.ReadBytes) }},
		{prometheus.NewDesc("rung_replica_io_write_bytes_total", "Block I/O each replica wrote.", replicaLabels, nil),
			prometheus.CounterValue, func(u *wire.Usage) float64 { return float64(u.WriteBytes) }},
	}
	replicaLabels    = []string{"tenant", "workload", "replica"}
	descReplicaPSI   = prometheus.NewDesc("rung_replica_cpu_pressure", "CPU pressure (PSI some) of each replica's cgroup over its node's last interval, a fraction (cgroup v2 only).", replicaLabels, nil)
	descReplicaNoisy = prometheus.NewDesc("rung_replica_noisy_throttled", "1 while the noisy-neighbour ladder holds the replica at its CPU request.", replicaLabels, nil)
	descNodePressure = prometheus.NewDesc("rung_node_cpu_pressure", "CPU pressure (PSI some) of each node over its agent's last interval, a fraction.", []string{"node"}, nil)
)

// describeUsage sends the usage descriptions.
func describeUsage(ch chan<- *prometheus.Desc) {
	for _, u := range descUsage {
		ch <- u.d
	}
	ch <- descReplicaPSI
	ch <- descReplicaNoisy
	ch <- descNodePressure
}

// collectUsage sends one replica's usage series.
func collectUsage(ch chan<- prometheus.Metric, r wire.Replica, name, idx string) {
	throttled := 0.0
	if r.Throttled {
		throttled = 1
	}
	ch <- prometheus.MustNewConstMetric(descReplicaNoisy, prometheus.GaugeValue, throttled, r.Tenant, name, idx)
	u := r.Usage
	if u == nil {
		return
	}
	for _, d := range descUsage {
		ch <- prometheus.MustNewConstMetric(d.d, d.vt, d.f(u), r.Tenant, name, idx)
	}
	if u.Pressure != nil {
		ch <- prometheus.MustNewConstMetric(descReplicaPSI, prometheus.GaugeValue, *u.Pressure, r.Tenant, name, idx)
	}
}

// collectNodePressure sends the nodes' CPU pressure as their agents
// reported it.
func (c replicaCollector) collectNodePressure(ch chan<- prometheus.Metric) {
	n := c.s.nodes
	n.mu.Lock()
	defer n.mu.Unlock()
	for name, b := range n.seen {
		if p := b.hb.CPUPressure; p != nil {
			ch <- prometheus.MustNewConstMetric(descNodePressure, prometheus.GaugeValue, *p, name)
		}
	}
}
