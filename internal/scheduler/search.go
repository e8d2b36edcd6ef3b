package scheduler

import (
	"maps"
	"slices"
	"sort"
)

// defaultSearchBudget bounds the fallback search, in node evaluations.
const defaultSearchBudget = 200_000

// snapshot is a deep copy of the mutable planning state.
type snapshot struct {
	nodes  []nodeState
	hosts  []hostState
	groups []group
	reps   []replica
	wl     []wlState
}

// load makes s the planner's state. s must not be used afterwards.
func (pl *planner) load(s snapshot) {
	pl.nodes, pl.hosts, pl.groups, pl.reps, pl.wl = s.nodes, s.hosts, s.groups, s.reps, s.wl
	pl.bound = -1 // cached counters point into the old state
}

func (pl *planner) save() snapshot {
	s := snapshot{
		nodes:  slices.Clone(pl.nodes),
		hosts:  slices.Clone(pl.hosts),
		groups: slices.Clone(pl.groups),
		reps:   slices.Clone(pl.reps),
		wl:     slices.Clone(pl.wl),
	}
	for i := range s.nodes {
		s.nodes[i].groups = slices.Clone(s.nodes[i].groups)
	}
	for i := range s.hosts {
		s.hosts[i].tenants = slices.Clone(s.hosts[i].tenants)
	}
	for i := range s.groups {
		s.groups[i].reps = slices.Clone(s.groups[i].reps)
	}
	for i := range s.wl {
		if s.wl[i].byLevel == nil {
			continue
		}
		m := make(map[int]*counter, len(s.wl[i].byLevel))
		for l, c := range s.wl[i].byLevel {
			m[l] = &counter{m: maps.Clone(c.m), distinct: c.distinct}
		}
		s.wl[i].byLevel = m
	}
	return s
}

// search is the exhaustive fallback for when the greedy pass leaves
// replicas unplaced: a depth-first search over node assignments (tiers
// follow from the assignment: each replica takes the weakest tier its
// neighbours require), cheapest node first, with replicas of one workload
// taking nodes in non-decreasing order to skip permutations. It gives up
// after budget evaluations; on success the planner holds the new plan.
func (pl *planner) search(budget int) bool {
	if budget == 0 {
		budget = defaultSearchBudget
	}
	// Start again from the replicas that must stay.
	base := pl.save()
	pl.resetTo(base)
	pl.compatGroups()
	order := pl.order()
	steps := 0
	var dfs func(k int, minNode []int) bool
	dfs = func(k int, minNode []int) bool {
		if k == len(order) {
			return len(pl.sameBroken()) == 0
		}
		r := order[k]
		w := pl.reps[r].w
		pl.ord = pl.reps[r].ord
		type cand struct {
			n    int
			cost float64
			v    verdict
			rs   []raise
		}
		var cands []cand
		for n := minNode[w]; n < len(pl.top.Nodes); n++ {
			steps++
			if steps > budget {
				return false
			}
			if pl.avoided(r, n) {
				continue
			}
			v := pl.evaluate(w, n, true)
			if v.filter == fOK {
				cands = append(cands, cand{n, v.cost, v, slices.Clone(pl.scratch[:v.nraise])})
			}
		}
		sort.SliceStable(cands, func(a, b int) bool { return cands[a].cost < cands[b].cost })
		for _, c := range cands {
			snap := pl.save()
			pl.commit(r, int32(c.n), c.v.tier, c.rs)
			prev := minNode[w]
			minNode[w] = c.n
			if dfs(k+1, minNode) {
				return true
			}
			minNode[w] = prev
			pl.load(snap)
			if steps > budget {
				return false
			}
		}
		return false
	}
	pl.deferSame = true
	ok := dfs(0, make([]int, len(pl.p.Workloads)))
	pl.deferSame = false
	if ok {
		return true
	}
	// No full placement found: keep the greedy result.
	pl.load(base)
	return false
}

// resetTo clears every non-fixed replica from the state, keeping the
// fixed ones, by replaying them onto an empty state.
func (pl *planner) resetTo(s snapshot) {
	fresh := newPlanner(pl.p)
	pl.load(snapshot{nodes: fresh.nodes, hosts: fresh.hosts, groups: fresh.groups, reps: fresh.reps, wl: fresh.wl})
	for i := range s.reps {
		if s.reps[i].fixed {
			pl.reps[i].fixed = true
			pl.commit(int32(i), s.reps[i].node, s.reps[i].tier, nil)
		}
	}
}
