package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// result assembles the plan, with a reason per replica, after checking
// every invariant once more from scratch (fail closed on an engine bug).
func (pl *planner) result() (*Result, error) {
	res := &Result{Placements: []Placement{}, Unplaced: pl.unplaced, Explain: pl.trace}
	if res.Unplaced == nil {
		res.Unplaced = []Unplaced{}
	}
	for i := range pl.reps {
		r := &pl.reps[i]
		if r.node < 0 {
			continue
		}
		res.Placements = append(res.Placements, Placement{
			Workload: pl.p.Key(int(r.w)),
			Replica:  int(r.ord),
			Tier:     r.tier.String(),
			Node:     pl.top.Nodes[r.node].Name,
			Host:     pl.top.HostName(int(r.node)),
			Reason:   pl.reason(int32(i)),
		})
	}
	sort.SliceStable(res.Placements, func(a, b int) bool {
		pa, pb := &res.Placements[a], &res.Placements[b]
		if pa.Workload != pb.Workload {
			return pa.Workload < pb.Workload
		}
		return pa.Replica < pb.Replica
	})
	sort.SliceStable(res.Unplaced, func(a, b int) bool {
		ua, ub := &res.Unplaced[a], &res.Unplaced[b]
		if ua.Workload != ub.Workload {
			return ua.Workload < ub.Workload
		}
		return ua.Replica < ub.Replica
	})
	if pl.trace != nil {
		for i := range pl.trace.Replicas {
			tr := &pl.trace.Replicas[i]
			for j := range pl.reps {
				r := &pl.reps[j]
				if int(r.w) == pl.explain && int(r.ord) == tr.Replica {
					if r.node >= 0 {
						tr.Placed, tr.Tier, tr.Node, tr.Reason = true, r.tier.String(), pl.top.Nodes[r.node].Name, pl.reason(int32(j))
					}
				}
			}
			if !tr.Placed {
				for _, u := range res.Unplaced {
					if u.Workload == pl.trace.Workload && u.Replica == tr.Replica {
						tr.Reason = strings.Join(u.Reasons, "; ")
					}
				}
			}
		}
	}
	if v := pl.violations(); len(v) > 0 && len(pl.p.Existing) == 0 {
		return nil, fmt.Errorf("scheduler invariant broken (engine bug, refusing the plan): %s", strings.Join(v, "; "))
	} else if len(v) > 0 {
		res.Problems = append(res.Problems, v...)
	}
	res.Problems = append(res.Problems, pl.spreadProblems()...)
	for i := range pl.reps {
		if r := &pl.reps[i]; r.fixed && r.node >= 0 && pl.sameViolated(int32(i)) {
			res.Problems = append(res.Problems, fmt.Sprintf("%s[%d]: a hard \"==\" affinity can no longer be met on node %s (its targets were lost and re-placed elsewhere; the replica is kept)",
				pl.keys[r.w], r.ord, pl.top.Nodes[r.node].Name))
		}
	}
	if pl.err != nil {
		return nil, pl.err
	}
	return res, nil
}

// reason names the rule and neighbour that set replica r's tier.
func (pl *planner) reason(r int32) string {
	rep := &pl.reps[r]
	w := &pl.p.Workloads[rep.w]
	strongest, from, rule := tenancy.None, -1, ""
	pl.neighbours(r, func(b int32, bnd tenancy.Tier) {
		k := pl.required(rep.w, pl.reps[b].w)
		t := pl.reqTier(k)
		if t <= bnd {
			return
		}
		bw := int(pl.reps[b].w)
		if t > strongest || (t == strongest && pl.keys[bw] < pl.keys[from]) {
			strongest, from, rule = t, bw, pl.decision(k).Rule
		}
	})
	var out string
	switch {
	case w.FloorSource != "" && w.Floor >= strongest:
		out = w.FloorSource
	case from >= 0:
		out = rule + " vs " + pl.p.Key(from)
	default:
		out = "no other replica on host " + pl.top.HostName(int(rep.node))
	}
	if floor := tenancy.Max(strongest, w.Floor); rep.tier > floor && !rep.fixed {
		out += fmt.Sprintf("; node %s runs nothing weaker than %s", pl.top.Nodes[rep.node].Name, rep.tier)
	}
	if rep.fixed {
		out += " (kept from the previous plan)"
	}
	return out
}

// neighbours calls f for every other placed replica on r's physical host,
// with the placement boundary from r to it.
func (pl *planner) neighbours(r int32, f func(b int32, boundary tenancy.Tier)) {
	rep := &pl.reps[r]
	n := int(rep.node)
	a := pl.top.Place(n)
	for _, m := range pl.hosts[pl.top.Nodes[n].Host].nodes {
		bnd := tenancy.Boundary(a, pl.top.Place(int(m)))
		for _, gi := range pl.nodes[m].groups {
			for _, b := range pl.groups[gi].reps {
				if b != r {
					f(b, bnd)
				}
			}
		}
	}
}

// violations re-checks effective(a→b) ≥ required(a→b) for every ordered
// pair on each physical host, and the host tier's exclusivity.
func (pl *planner) violations() []string {
	var out []string
	for i := range pl.reps {
		a := int32(i)
		ra := &pl.reps[a]
		if ra.node < 0 {
			continue
		}
		pl.neighbours(a, func(b int32, bnd tenancy.Tier) {
			rb := &pl.reps[b]
			k := pl.required(ra.w, rb.w)
			if eff := tenancy.Max(ra.tier, bnd); eff < pl.reqTier(k) {
				d := pl.decision(k)
				out = append(out, fmt.Sprintf("%s[%d] → %s[%d] on host %s: effective %s < required %s (%s)",
					pl.p.Key(int(ra.w)), ra.ord, pl.p.Key(int(rb.w)), rb.ord, pl.top.HostName(int(ra.node)), eff, d.Tier, d.Rule))
			}
			if ra.tier == tenancy.Host && pl.p.Workloads[ra.w].Tenant != pl.p.Workloads[rb.w].Tenant {
				out = append(out, fmt.Sprintf("%s[%d] has tier host but shares host %s with %s[%d]",
					pl.p.Key(int(ra.w)), ra.ord, pl.top.HostName(int(ra.node)), pl.p.Key(int(rb.w)), rb.ord))
			}
		})
	}
	return out
}

// spreadProblems lists hard spreads that the final plan does not meet
// (after a failure, survivors and re-placed replicas may not suffice).
func (pl *planner) spreadProblems() []string {
	var out []string
	for w := range pl.p.Workloads {
		wl := &pl.p.Workloads[w]
		if wl.Replicas == 0 {
			continue
		}
		for _, s := range wl.Spread {
			if s.Soft || s.MinDomains == 0 {
				continue
			}
			c := pl.wl[w].level(s.Level)
			if c.distinct < s.MinDomains {
				out = append(out, fmt.Sprintf("%s: spread %s can no longer be met: needs %d domains, replicas are in %d",
					pl.p.Key(w), s.LevelName, s.MinDomains, c.distinct))
			}
		}
	}
	return out
}

// nodeVerdict turns a verdict into its explanation.
func (pl *planner) nodeVerdict(w int32, n int, v verdict) NodeVerdict {
	nv := NodeVerdict{Node: pl.top.Nodes[n].Name}
	if v.filter != fOK {
		nv.Rejected, nv.Filter, nv.Reason = true, filterNames[v.filter], pl.describe(w, n, v)
		return nv
	}
	nv.Tier, nv.Cost = v.tier.String(), v.cost
	nv.Reason = fmt.Sprintf("fits as %s, cost %.3f", v.tier, v.cost)
	if v.nraise > 0 {
		nv.Reason += fmt.Sprintf(", raising %d neighbour group(s)", v.nraise)
	}
	if pl.hosts[pl.hostOf[n]].count == 0 {
		nv.Reason += fmt.Sprintf(" (opens empty host %s)", pl.top.HostName(n))
	}
	if v.soft > 0 {
		nv.Reason += fmt.Sprintf(" (breaks %d soft rule(s))", v.soft)
	}
	return nv
}

// describe says in words why node n failed filter v.filter for workload w.
func (pl *planner) describe(w int32, n int, v verdict) string {
	p, node := pl.p, &pl.top.Nodes[n]
	wl := &p.Workloads[w]
	switch v.filter {
	case fDown:
		return "node is down"
	case fNodeTenant:
		return fmt.Sprintf("VM node reserved for tenant %s", node.Tenant)
	case fRuntime:
		return fmt.Sprintf("needs tier ≥ %s (%s), node runs %s", wl.Floor, floorWhy(wl), node.Offers())
	case fDedicated:
		if wl.Dedicated {
			return fmt.Sprintf("dedicated: host %s runs tenant %s", pl.top.HostName(n), p.Tenants[v.detail].Name)
		}
		return fmt.Sprintf("host %s is dedicated to tenant %s", pl.top.HostName(n), p.Tenants[v.detail].Name)
	case fResidency:
		return pl.describeResidency(w, v.detail, n)
	case fVolume:
		return pl.describeVolume(w, int32(v.detail), n)
	case fDisk:
		return pl.describeDisk(w, int32(v.detail), n)
	case fCapacity:
		free := node.Capacity.Sub(pl.nodes[n].used)
		need := wl.Request.Add(p.Overhead[v.tier])
		return fmt.Sprintf("needs %s (%s tier), free %s", fmtRes(need), v.tier, fmtRes(free))
	case fSpread:
		s := &wl.Spread[v.detail]
		d := node.Domain[s.Level]
		if d == topology.NoDomain {
			return fmt.Sprintf("spread %s: node has no %s domain", s.LevelName, s.LevelName)
		}
		c := pl.wl[w].level(s.Level)
		name := pl.top.Domains[s.Level][d]
		if s.MaxPerDomain > 0 && int(c.get(d)) >= s.MaxPerDomain {
			return fmt.Sprintf("spread %s: %s %s already holds %d replica(s) (maxPerDomain %d)", s.LevelName, s.LevelName, name, c.get(d), s.MaxPerDomain)
		}
		return fmt.Sprintf("spread %s: %s %s is already used and %d distinct %s domains are needed", s.LevelName, s.LevelName, name, s.MinDomains, s.LevelName)
	case fAffinity:
		if v.detail < 0 {
			rr := pl.revAff[w][-v.detail-1]
			a := &p.Workloads[rr.f].Affinity[rr.ai]
			return fmt.Sprintf("affinity of %s (%s != %s): %s %s holds a replica of %s", pl.keys[rr.f], a.Desc, a.LevelName, a.LevelName, pl.top.DomainName(n, a.Level), pl.keys[rr.f])
		}
		a := &wl.Affinity[v.detail]
		dn := pl.top.DomainName(n, a.Level)
		if a.Same {
			return fmt.Sprintf("affinity %s == %s: no replica of it in %s %q", a.Desc, a.LevelName, a.LevelName, dn)
		}
		return fmt.Sprintf("affinity %s != %s: %s %s holds a replica of it", a.Desc, a.LevelName, a.LevelName, dn)
	case fTenancy:
		return pl.describeTenancy(n, v)
	}
	return "ok"
}

func (pl *planner) describeTenancy(n int, v verdict) string {
	p, node := pl.p, &pl.top.Nodes[n]
	host := pl.top.HostName(n)
	rule := func() string {
		if v.dec == 0 {
			return ""
		}
		return pl.decision(v.dec).Rule
	}
	nb := func() string {
		if v.detail < 0 {
			return "its floor"
		}
		return p.Key(v.detail)
	}
	switch v.why {
	case whyFixed:
		return fmt.Sprintf("tenancy: running replica of %s on host %s would need %s towards it (%s) and running replicas are never raised", nb(), host, pl.decision(v.dec).Tier, rule())
	case whyHostTier:
		return fmt.Sprintf("tenancy: host %s runs %s at tier host", host, nb())
	case whyExclusive:
		return fmt.Sprintf("tenancy: needs tier host (%s vs %s) but host %s runs other tenants", rule(), nb(), host)
	case whyNoRuntime:
		return fmt.Sprintf("tenancy: needs %s (%s vs %s), node runs %s", v.need, rule(), nb(), node.Offers())
	case whyRaiseNode:
		s := fmt.Sprintf("tenancy: neighbour %s would need raising to %s (%s) but its node cannot run it", nb(), v.need, rule())
		if node.NoNetwork.Has(v.need) {
			s += " (" + node.NetworkWhy() + ")"
		}
		return s
	case whyRaiseHost:
		return fmt.Sprintf("tenancy: neighbour %s would need its own host (%s)", nb(), rule())
	case whyCapacity:
		return fmt.Sprintf("tenancy: needs %s (%s vs %s), and its overhead does not fit", v.tier, rule(), nb())
	}
	return "tenancy"
}

func floorWhy(w *Workload) string {
	if w.FloorSource == "" {
		return "default"
	}
	return w.FloorSource
}

func fmtRes(r topology.Resources) string {
	cpu := resource.NewMilliQuantity(r.MilliCPU, resource.DecimalSI)
	mem := resource.NewQuantity(r.Memory, resource.BinarySI)
	s := fmt.Sprintf("cpu %s, memory %s", cpu, mem)
	if r.PIDs != 0 {
		s += fmt.Sprintf(", pids %d", r.PIDs)
	}
	return s
}

// diagnose explains why replica r fits nowhere: how many nodes each filter
// removed, and the smallest change that would make it fit.
func (pl *planner) diagnose(r int32) Unplaced {
	rep := &pl.reps[r]
	w := rep.w
	wl := &pl.p.Workloads[w]
	u := Unplaced{Workload: pl.p.Key(int(w)), Replica: int(rep.ord)}
	pl.ord = rep.ord
	var removed [nFilters]int
	var firstDesc [nFilters]string
	for n := range pl.top.Nodes {
		v := pl.evaluate(w, n, false)
		removed[v.filter]++
		if v.filter != fOK && firstDesc[v.filter] == "" {
			firstDesc[v.filter] = pl.describe(w, n, v)
		}
	}
	total := len(pl.top.Nodes)
	if total == 0 {
		u.Reasons = append(u.Reasons, "no nodes: add a Topology with nodes")
		return u
	}
	// Spread shortfalls name the change directly (DESIGN §3 example).
	for _, s := range wl.Spread {
		if s.Soft {
			continue
		}
		if s.MaxPerDomain > 0 {
			need := (wl.Replicas + s.MaxPerDomain - 1) / s.MaxPerDomain
			if usable := pl.usableDomains(w, s.Level); usable < need && s.MinDomains <= need {
				u.Reasons = append(u.Reasons, fmt.Sprintf("spread %s: needs %d domains (%d replicas, at most %d per %s), %d exist; smallest change: %d more %s",
					s.LevelName, need, wl.Replicas, s.MaxPerDomain, s.LevelName, usable, need-usable, s.LevelName))
				continue
			}
		}
		if s.MinDomains == 0 {
			continue
		}
		if s.MinDomains > wl.Replicas {
			u.Reasons = append(u.Reasons, fmt.Sprintf("spread %s: needs %d domains but the workload has %d replicas; smallest change: replicas: %d",
				s.LevelName, s.MinDomains, wl.Replicas, s.MinDomains))
			continue
		}
		usable := pl.usableDomains(w, s.Level)
		if usable < s.MinDomains {
			u.Reasons = append(u.Reasons, fmt.Sprintf("spread %s: needs %d domains, %d exist; smallest change: %d more %s%s",
				s.LevelName, s.MinDomains, usable, s.MinDomains-usable, s.LevelName, pl.distinctHint(wl, s.Level)))
		}
	}
	for f := fDown; f < nFilters; f++ {
		if removed[f] == 0 {
			continue
		}
		u.Reasons = append(u.Reasons, fmt.Sprintf("%s: removed %d of %d nodes (e.g. %s)", filterNames[f], removed[f], total, firstDesc[f]))
	}
	if fix := pl.smallestChange(w); fix != "" {
		u.Reasons = append(u.Reasons, "smallest change: "+fix)
	}
	return u
}

// usableDomains counts domains at level that hold a node passing every
// filter but spread (node-level filters only).
func (pl *planner) usableDomains(w int32, level int) int {
	seen := map[int32]bool{}
	for n := range pl.top.Nodes {
		v := pl.evaluate(w, n, false)
		if v.filter == fOK || v.filter == fSpread {
			if d := pl.top.Nodes[n].Domain[level]; d != topology.NoDomain {
				seen[d] = true
			}
		}
	}
	return len(seen)
}

// distinctHint adds "with a distinct seismic zone" when another spread of
// the workload also needs new domains at an orthogonal level.
func (pl *planner) distinctHint(wl *Workload, level int) string {
	var parts []string
	for _, s := range wl.Spread {
		if s.Level != level && !s.Soft && s.MinDomains > 0 {
			parts = append(parts, "a distinct "+s.LevelName)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " with " + strings.Join(parts, " and ")
}

// smallestChange finds the node closest to fitting: the one that fails only
// on capacity with the smallest shortfall, or that fails only one filter.
func (pl *planner) smallestChange(w int32) string {
	p := pl.p
	wl := &p.Workloads[w]
	bestShort, bestNode := 0.0, -1
	var bestNeed topology.Resources
	for n := range pl.top.Nodes {
		node := &pl.top.Nodes[n]
		v := pl.evaluate(w, n, false)
		var tier tenancy.Tier
		switch {
		case v.filter == fCapacity:
			tier = v.tier
		case v.filter == fTenancy && v.why == whyCapacity:
			tier = v.tier
		default:
			continue
		}
		need := wl.Request.Add(p.Overhead[tier])
		free := node.Capacity.Sub(pl.nodes[n].used)
		short := topology.Resources{
			MilliCPU: max(0, need.MilliCPU-free.MilliCPU),
			Memory:   max(0, need.Memory-free.Memory),
		}
		if pl.pidsCap[n] {
			short.PIDs = max(0, need.PIDs-free.PIDs)
		}
		if s := units(short) + float64(short.PIDs)/1e6; bestNode < 0 || s < bestShort {
			bestShort, bestNode, bestNeed = s, n, short
		}
	}
	if bestNode >= 0 {
		return fmt.Sprintf("free %s more on node %s (or add a node like it)", fmtShort(bestNeed), pl.top.Nodes[bestNode].Name)
	}
	if fix := pl.diskChange(w); fix != "" {
		return fix
	}
	for n := range pl.top.Nodes {
		if pl.offered(n, wl.Floor) != tenancy.None {
			return ""
		}
	}
	for n := range pl.top.Nodes {
		if node := &pl.top.Nodes[n]; !node.Down && node.NoNetwork.Has(wl.Floor) {
			// The node has the runtime; its tenant network is what it lacks.
			return fmt.Sprintf("no node runs tier %s with a tenant network: place the workload on a Topology without spec.network, or lower its tier if its tenants allow (rules.md)", wl.Floor)
		}
	}
	return fmt.Sprintf("add %s to the runtimes of a node (none runs tier %s or stronger)", wl.Floor, wl.Floor)
}

func fmtShort(r topology.Resources) string {
	var parts []string
	if r.MilliCPU > 0 {
		parts = append(parts, "cpu "+resource.NewMilliQuantity(r.MilliCPU, resource.DecimalSI).String())
	}
	if r.Memory > 0 {
		parts = append(parts, "memory "+resource.NewQuantity(r.Memory, resource.BinarySI).String())
	}
	if r.PIDs > 0 {
		parts = append(parts, fmt.Sprintf("pids %d", r.PIDs))
	}
	return strings.Join(parts, ", ")
}
