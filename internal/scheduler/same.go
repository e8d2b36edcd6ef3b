package scheduler

import (
	"slices"

	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// "==" affinity is a property of the finished plan: a replica placed while
// none of its targets were placed is fine only if a target joins it later.
// The greedy pass checks it as it goes (targets are ordered first), so only
// cycles and self-selecting labels can break it; sameRepair finds those,
// takes the replica out and tries again. The exhaustive search defers the
// check to its leaves instead (deferSame).

// sameViolated reports whether placed replica r breaks a hard "==" rule.
func (pl *planner) sameViolated(r int32) bool {
	rep := &pl.reps[r]
	wl := &pl.p.Workloads[rep.w]
	for _, a := range wl.Affinity {
		if !a.Same || a.Soft {
			continue
		}
		d := pl.top.Nodes[rep.node].Domain[a.Level]
		total, here := 0, int32(0)
		for _, t := range a.Targets {
			total += pl.wl[t].placed
			if d != topology.NoDomain {
				here += pl.wl[t].level(a.Level).get(d)
			}
			if int32(t) == rep.w { // r itself is not its own neighbour
				total--
				if d != topology.NoDomain {
					here--
				}
			}
		}
		if total > 0 && here == 0 {
			return true
		}
	}
	return false
}

// sameBroken lists placed, movable replicas that break a hard "==" rule.
func (pl *planner) sameBroken() []int32 {
	var out []int32
	for i := range pl.reps {
		if pl.reps[i].node >= 0 && !pl.reps[i].fixed && pl.sameViolated(int32(i)) {
			out = append(out, int32(i))
		}
	}
	return out
}

// sameRepair takes out replicas that break "==" rules and places them
// again, a few rounds; what still breaks a rule ends up unplaced.
func (pl *planner) sameRepair(unplaced []int32) []int32 {
	for round := 0; round < 3; round++ {
		broken := pl.sameBroken()
		if len(broken) == 0 {
			break
		}
		for _, r := range broken {
			pl.unplace(r)
		}
		unplaced = append(unplaced, broken...)
		slices.Sort(unplaced)
		var still []int32
		for _, r := range unplaced {
			if !pl.place(r) {
				still = append(still, r)
			}
		}
		unplaced = still
	}
	for _, r := range pl.sameBroken() {
		pl.unplace(r)
		unplaced = append(unplaced, r)
	}
	return unplaced
}

// unplace reverses commit for replica r. Raises it caused stay: they only
// add isolation, and undoing them would need the whole history.
func (pl *planner) unplace(r int32) {
	p := pl.p
	rep := &pl.reps[r]
	n := rep.node
	w := &p.Workloads[rep.w]
	ns := &pl.nodes[n]
	ns.used = ns.used.Sub(w.Request).Sub(p.Overhead[rep.tier])
	if p.Disk != nil {
		need, _ := w.charge(rep.ord)
		pl.nodes[p.diskNode(int(n))].disk -= need
	}
	for _, gi := range ns.groups {
		g := &pl.groups[gi]
		if i := slices.Index(g.reps, r); i >= 0 {
			g.reps = slices.Delete(g.reps, i, i+1)
			break
		}
	}
	host := &pl.hosts[pl.top.Nodes[n].Host]
	host.count--
	tc := host.tenant(int32(w.Tenant))
	tc.n--
	if w.Dedicated {
		tc.dedicated--
	}
	if rep.tier == tenancy.Host {
		tc.hostTier--
	}
	if pl.remain != nil {
		pl.remain[pl.compat[rep.w]] += units(w.Request)
	}
	ws := &pl.wl[rep.w]
	ws.placed--
	for _, l := range pl.levels {
		if d := pl.top.Nodes[n].Domain[l]; d != topology.NoDomain {
			ws.level(l).dec(d)
		}
	}
	rep.node = -1
}

// lower gives every movable replica the weakest tier its final neighbours
// allow, once the plan is complete: replicas taken out by sameRepair, or
// shrunk for room that later freed up, may have left a neighbour stronger
// than needed ("never more than it needs").
func (pl *planner) lower() {
	p := pl.p
	for i := range pl.reps {
		r := int32(i)
		rep := &pl.reps[r]
		if rep.node < 0 || rep.fixed {
			continue
		}
		need := p.Workloads[rep.w].Floor
		pl.neighbours(r, func(b int32, bnd tenancy.Tier) {
			if t := pl.reqTier(pl.required(rep.w, pl.reps[b].w)); t > bnd && t > need {
				need = t
			}
		})
		n := int(rep.node)
		node := &pl.top.Nodes[n]
		host := &pl.hosts[node.Host]
		tenant := int32(p.Workloads[rep.w].Tenant)
		for t := need; t < rep.tier; t++ {
			if !node.Runtimes.Has(t) || (t == tenancy.Host && host.others(tenant)) {
				continue
			}
			free := node.Capacity.Sub(pl.nodes[n].used).Add(p.Overhead[rep.tier])
			if !p.Overhead[t].Fits(free, pl.pidsCap[n]) {
				continue
			}
			pl.retier(r, t)
			break
		}
	}
}

// retier moves placed replica r to tier t on its node.
func (pl *planner) retier(r int32, t tenancy.Tier) {
	p := pl.p
	rep := &pl.reps[r]
	ns := &pl.nodes[rep.node]
	ns.used = ns.used.Sub(p.Overhead[rep.tier]).Add(p.Overhead[t])
	for _, gi := range ns.groups {
		g := &pl.groups[gi]
		if i := slices.Index(g.reps, r); i >= 0 {
			g.reps = slices.Delete(g.reps, i, i+1)
			break
		}
	}
	host := &pl.hosts[pl.top.Nodes[rep.node].Host]
	tc := host.tenant(int32(p.Workloads[rep.w].Tenant))
	if rep.tier == tenancy.Host {
		tc.hostTier--
	}
	if t == tenancy.Host {
		tc.hostTier++
	}
	rep.tier = t
	for _, gi := range ns.groups {
		g := &pl.groups[gi]
		if g.w == rep.w && g.tier == t && !g.fixed {
			g.reps = append(g.reps, r)
			return
		}
	}
	gi := int32(len(pl.groups))
	pl.groups = append(pl.groups, group{node: rep.node, w: rep.w, tier: t, reps: []int32{r}})
	ns.groups = append(ns.groups, gi)
}
