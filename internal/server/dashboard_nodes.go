package server

import (
	"cmp"
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

// The dashboard's pages about nodes: the topology map (or, for a large
// fleet, its summary by rack) and one page per node.

// topologyPage is the model of /ui/topology: datacenter → rack → host →
// VM, each node with its liveness, usage and replicas. A selection of more
// than uiTopologyHosts hosts is shown as one row per rack instead, each
// linking to its rack's full map (?dc=DC&rack=RACK), so a large fleet
// stays a light page.
type topologyPage struct {
	pageBase
	// DC and Rack are the selection ("" for all).
	DC, Rack    string
	Datacenters []dcView
	// Racks is the summary, when the selection is too large to draw.
	Racks []rackSummary
	Hosts int
}

// rackSummary is one rack's health and usage in the summary.
type rackSummary struct {
	DC, Rack, Link         string
	Hosts, Up, Down, Other int
	Replicas, Failing      int
	CPU, Mem               meter
}

// uiTopologyHosts is the most hosts the topology page draws one by one.
const uiTopologyHosts = 500

func rackLink(dc, rack string) string {
	q := url.Values{"dc": {dc}}
	if rack != "" {
		q.Set("rack", rack)
	}
	return "/ui/topology?" + q.Encode()
}

func (s *Server) topologyPage(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	if !base.Operator {
		return s.notFoundPage(w, base, "the topology is for operators; your replicas are on the overview")
	}
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	m := topologyPage{DC: truncate(q.Get("dc"), 253), Rack: truncate(q.Get("rack"), 253)}
	base.Title = "Topology"
	for _, dc := range v.topology(s.nodes.status(topologyNodes(v.pl.set))) {
		if m.DC != "" && dc.Name != m.DC {
			continue
		}
		var racks []rackView
		for _, rk := range dc.Racks {
			if m.Rack == "" || rk.Name == m.Rack {
				racks = append(racks, rk)
				m.Hosts += len(rk.Hosts)
			}
		}
		if len(racks) > 0 {
			m.Datacenters = append(m.Datacenters, dcView{Name: dc.Name, Racks: racks})
		}
	}
	if m.Hosts > uiTopologyHosts {
		for _, dc := range m.Datacenters {
			for _, rk := range dc.Racks {
				m.Racks = append(m.Racks, summarize(dc.Name, rk))
			}
		}
		m.Datacenters = nil
	}
	m.pageBase = base
	return s.render(w, http.StatusOK, "topology", m)
}

// summarize sums a rack's hosts (and their VM nodes' replicas).
func summarize(dc string, rk rackView) rackSummary {
	out := rackSummary{DC: dc, Rack: rk.Name, Link: rackLink(dc, rk.Name), Hosts: len(rk.Hosts)}
	var cpu, cpuTotal, mem, memTotal int64
	var count func(h hostView)
	count = func(h hostView) {
		out.Replicas += len(h.Replicas)
		for _, r := range h.Replicas {
			switch r.State {
			case wire.ReplicaFailed, wire.ReplicaUnhealthy, wire.ReplicaRestarting:
				out.Failing++
			}
		}
		for _, vm := range h.VMs {
			count(vm)
		}
	}
	for _, h := range rk.Hosts {
		switch h.State {
		case wire.NodeUp, "local":
			out.Up++
		case wire.NodeDown:
			out.Down++
		default:
			out.Other++
		}
		cpu, cpuTotal, mem, memTotal = cpu+h.CPU.Used, cpuTotal+h.CPU.Total, mem+h.Mem.Used, memTotal+h.Mem.Total
		count(h)
	}
	out.CPU, out.Mem = cpuMeter(cpu, cpuTotal), memMeter(mem, memTotal)
	return out
}

type dcView struct {
	Name  string
	Racks []rackView
}

type rackView struct {
	Name  string
	Hosts []hostView
}

// hostView is a node: a physical host with its VM nodes, or a VM node.
type hostView struct {
	// Domains are the host's other failure domains ("pdu p1 · switch s1").
	Name, State, Runtimes, Tenant, Domains string
	CPU, Mem                               meter
	// Now is the usage its replicas report.
	Now string
	// Health counts its replicas by state.
	Health   []countRow
	Replicas []wire.Replica
	VMs      []hostView
}

// topology lays out every node by datacenter and rack, VM nodes under
// their host, each with its liveness, the tiers it offered the scheduler
// (what its manifest lists and its agent detects), its usage and
// replicas.
func (v *view) topology(statuses []wire.NodeStatus) []dcView {
	state := map[string]string{}
	for _, st := range statuses {
		state[st.Name] = st.State
		// A node no agent of its own reports on is run by rung up's own
		// agent when that stands for every node.
		if st.State == wire.NodeUnknown && v.pl.local {
			state[st.Name] = "local"
		}
	}
	byNode := map[string][]wire.Replica{}
	for _, r := range v.replicas {
		if r.Node != "" {
			byNode[r.Node] = append(byNode[r.Node], r)
		}
	}
	usedNode, _ := v.used()
	vms := map[string][]hostView{}
	type placed struct {
		dc, rack string
		host     hostView
	}
	var hosts []placed
	for _, t := range v.pl.set.Topologies {
		for _, n := range t.Spec.Nodes {
			cpu, mem := capacityOf(n)
			u := usedNode[n.Name]
			reps := byNode[n.Name]
			health := map[string]int{}
			for _, r := range reps {
				health[r.State]++
			}
			hv := hostView{Name: n.Name, State: cmp.Or(state[n.Name], wire.NodeUnknown), Runtimes: v.pl.offers[n.Name], Tenant: n.Tenant,
				CPU: cpuMeter(u[0], cpu), Mem: memMeter(u[1], mem), Now: usageNow(reps), Health: countsOf(health, wire.ReplicaStates), Replicas: reps}
			if n.Host != "" {
				vms[n.Host] = append(vms[n.Host], hv)
				continue
			}
			var other []string
			for _, level := range slices.Sorted(maps.Keys(n.Domains)) {
				if level != "datacenter" && level != "rack" {
					other = append(other, level+" "+n.Domains[level])
				}
			}
			hv.Domains = strings.Join(other, " · ")
			hosts = append(hosts, placed{dc: cmp.Or(n.Domains["datacenter"], "(no datacenter)"), rack: cmp.Or(n.Domains["rack"], "(no rack)"), host: hv})
		}
	}
	slices.SortFunc(hosts, func(a, b placed) int {
		return cmp.Or(strings.Compare(a.dc, b.dc), strings.Compare(a.rack, b.rack), strings.Compare(a.host.Name, b.host.Name))
	})
	var out []dcView
	for _, h := range hosts {
		h.host.VMs = vms[h.host.Name]
		slices.SortFunc(h.host.VMs, func(a, b hostView) int { return strings.Compare(a.Name, b.Name) })
		if len(out) == 0 || out[len(out)-1].Name != h.dc {
			out = append(out, dcView{Name: h.dc})
		}
		dc := &out[len(out)-1]
		if len(dc.Racks) == 0 || dc.Racks[len(dc.Racks)-1].Name != h.rack {
			dc.Racks = append(dc.Racks, rackView{Name: h.rack})
		}
		rack := &dc.Racks[len(dc.Racks)-1]
		rack.Hosts = append(rack.Hosts, h.host)
	}
	return out
}

// nodePage is the model of /ui/nodes/NAME.
type nodePage struct {
	pageBase
	Node          v1.Node
	Status        wire.NodeStatus
	Offers        string
	Manifest      string
	Reported      string
	CPU, Mem      meter
	Now           string
	VMs           []string
	Replicas      []wire.Replica
	DomainsSorted []countRowS
}

type countRowS struct{ Level, Name string }

func (s *Server) nodePage(ctx context.Context, w http.ResponseWriter, r *http.Request, base pageBase) error {
	name := r.PathValue("name")
	const missing = "no such node, or not one you may see (nodes are for operators)"
	if !base.Operator || !v1.IsDNSLabel(name) {
		return s.notFoundPage(w, base, missing)
	}
	v, err := s.look(ctx)
	if err != nil {
		return err
	}
	var node *v1.Node
	var vms []string
	for _, t := range v.pl.set.Topologies {
		for i, n := range t.Spec.Nodes {
			if n.Name == name {
				node = &t.Spec.Nodes[i]
			}
			if n.Host == name {
				vms = append(vms, n.Name)
			}
		}
	}
	if node == nil {
		return s.notFoundPage(w, base, missing)
	}
	base.Title = "node " + name
	m := nodePage{pageBase: base, Node: *node, Offers: v.pl.offers[name], VMs: vms,
		Status: wire.NodeStatus{Name: name, State: wire.NodeUnknown}}
	for _, st := range s.nodes.status(map[string]bool{name: true}) {
		if st.Name == name {
			m.Status = st
		}
	}
	if m.Status.State == wire.NodeUnknown && v.pl.local {
		m.Status.State = "local"
	}
	var rt []string
	for _, t := range node.Runtimes {
		rt = append(rt, string(t))
	}
	m.Manifest = strings.Join(rt, ", ")
	if m.Status.Runtimes != nil {
		m.Reported = strings.Join(m.Status.Runtimes, ", ")
		if m.Reported == "" {
			m.Reported = "none"
		}
		if len(m.Status.Emulated) > 0 {
			m.Reported += " (EMULATED, not a security boundary: " + strings.Join(m.Status.Emulated, ", ") + ")"
		}
	}
	for _, l := range slices.Sorted(maps.Keys(node.Domains)) {
		m.DomainsSorted = append(m.DomainsSorted, countRowS{l, node.Domains[l]})
	}
	byNode, byHost := v.used()
	u := byNode[name]
	if node.Host == "" {
		u = byHost[name]
	}
	cpu, mem := capacityOf(*node)
	m.CPU, m.Mem = cpuMeter(u[0], cpu), memMeter(u[1], mem)
	for _, rep := range v.replicas {
		if rep.Node == name || (node.Host == "" && rep.Host == name) {
			m.Replicas = append(m.Replicas, rep)
		}
	}
	m.Now = usageNow(m.Replicas)
	return s.render(w, http.StatusOK, "node", m)
}
