package scheduler

import (
	"fmt"

	v1 "rung.dev/rung/api/v1"

	"rung.dev/rung/internal/tenancy"
)

// Keep takes the placements of a previous plan as replicas that already run:
// those on nodes that are still up stay exactly where they are, at their
// tier; the others are lost and will be placed again. It returns notes on
// what was lost or could not be matched.
func (p *Problem) Keep(prev *Result) []string {
	var notes []string
	wl := map[string]int{}
	for i := range p.Workloads {
		wl[p.Key(i)] = i
	}
	lost := 0
	for _, pl := range prev.Placements {
		w, ok := wl[pl.Workload]
		if !ok {
			notes = append(notes, fmt.Sprintf("%s[%d]: workload no longer defined; dropped", pl.Workload, pl.Replica))
			continue
		}
		if pl.Replica < 0 || pl.Replica >= p.Workloads[w].Replicas {
			notes = append(notes, fmt.Sprintf("%s[%d]: beyond the workload's %d replicas; dropped", pl.Workload, pl.Replica, p.Workloads[w].Replicas))
			continue
		}
		n, ok := p.Topology.Node(pl.Node)
		if !ok {
			notes = append(notes, fmt.Sprintf("%s[%d]: node %s no longer exists; re-placed", pl.Workload, pl.Replica, pl.Node))
			lost++
			continue
		}
		if p.Topology.Nodes[n].Down {
			lost++
			notes = append(notes, fmt.Sprintf("%s[%d]: lost with node %s; re-placed", pl.Workload, pl.Replica, pl.Node))
			continue
		}
		tier, err := tenancy.ParseTier(v1.Tier(pl.Tier))
		if err != nil || tier == tenancy.None {
			notes = append(notes, fmt.Sprintf("%s[%d]: tier %q unknown; re-placed", pl.Workload, pl.Replica, pl.Tier))
			continue
		}
		if node := &p.Topology.Nodes[n]; !node.Runtimes.Has(tier) {
			notes = append(notes, fmt.Sprintf("%s[%d]: node %s no longer runs %s (it offers %s); re-placed", pl.Workload, pl.Replica, pl.Node, tier, node.Runtimes))
			continue
		}
		p.Existing = append(p.Existing, Existing{Workload: w, Replica: pl.Replica, Node: n, Tier: tier})
	}
	if lost > 0 {
		notes = append(notes, fmt.Sprintf("%d replica(s) lost to the failure", lost))
	}
	return notes
}
