package bruteforce

import (
	"fmt"
	"slices"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// Domain is a failure domain taken down, as in `rung plan --down LEVEL=NAME`.
type Domain struct {
	Level, Name string
}

// Check returns every hard-constraint violation of the plan res for set,
// under rules (nil: the default table only), with the domains down marked
// as lost. It checks that every replica of every workload appears exactly
// once, placed or unplaced; that each placed replica's node exists, is up,
// is not reserved for another tenant and runs its tier; floors; capacity
// (requests plus tier overhead) per node; dedication and the exclusivity of
// tier host per physical host; hard spread (maxPerDomain always,
// minDomains once every replica is placed); hard affinity; and
// effective(a→b) ≥ required(a→b) for every ordered pair on a physical host.
// An empty result means the plan is valid.
func Check(set *v1.Set, rules *tenancy.Rules, res *scheduler.Result, down ...Domain) []string {
	m, err := newModel(set, rules)
	if err != nil {
		return []string{"invalid input: " + err.Error()}
	}
	var out []string
	for _, d := range down {
		if _, err := m.top.MarkDown(d.Level, d.Name); err != nil {
			out = append(out, err.Error())
		}
	}
	reps, bad := m.fromResult(res)
	out = append(out, bad...)
	m.check(reps, true, func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) })
	for _, e := range sortedKeys(m.ruleErrs) {
		out = append(out, "rule failed: "+e)
	}
	return out
}

// Excess returns the placed replicas whose tier is stronger than needed:
// above the weakest tier the node runs that satisfies the replica's floor
// and the invariant towards its final neighbours. A fresh plan (no kept
// replicas) should have none: "never more than it needs" (DESIGN §2).
func Excess(set *v1.Set, rules *tenancy.Rules, res *scheduler.Result) []string {
	m, err := newModel(set, rules)
	if err != nil {
		return []string{"invalid input: " + err.Error()}
	}
	reps, out := m.fromResult(res)
	used := map[int]amount{}
	for _, r := range reps {
		used[r.node] = used[r.node].plus(m.wls[r.w].request).plus(m.overhead[r.tier])
	}
	for i, r := range reps {
		// A weaker tier "would do" when the invariant allows it, the node
		// runs it, the host stays exclusive if it is host, and its overhead
		// fits: overheads are configurable, so a stronger tier can be the
		// only one that fits.
		for t := m.need(reps, i); t < r.tier; t++ {
			if !m.runs(r.node, t) {
				continue
			}
			c := fromTopology(m.top.Nodes[r.node].Capacity)
			u := used[r.node].minus(m.overhead[r.tier]).plus(m.overhead[t])
			if u.exceeds(c) {
				continue
			}
			if t == tenancy.Host && m.othersOnHost(reps, i) {
				continue
			}
			out = append(out, fmt.Sprintf("%s on %s: tier %s, %s would do", m.name(r), m.top.Nodes[r.node].Name, r.tier, t))
			break
		}
	}
	return out
}

// othersOnHost reports whether another tenant has a replica on the
// physical host of reps[i].
func (m *model) othersOnHost(reps []rep, i int) bool {
	h := m.top.Nodes[reps[i].node].Host
	for j, o := range reps {
		if j != i && m.top.Nodes[o.node].Host == h && m.wls[o.w].tenant != m.wls[reps[i].w].tenant {
			return true
		}
	}
	return false
}

// fromResult converts placements to replicas, reporting malformed,
// duplicate and missing entries.
func (m *model) fromResult(res *scheduler.Result) ([]rep, []string) {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	seen := map[[2]int]string{}
	var reps []rep
	entry := func(kind, key string, ord int) (int, bool) {
		w, ok := m.index[key]
		if !ok {
			bad("%s %s[%d]: no such workload", kind, key, ord)
			return 0, false
		}
		if ord < 0 || ord >= m.wls[w].replicas {
			bad("%s %s[%d]: the workload has %d replicas", kind, key, ord, m.wls[w].replicas)
			return 0, false
		}
		if prev, dup := seen[[2]int{w, ord}]; dup {
			bad("%s %s[%d]: already listed as %s", kind, key, ord, prev)
			return 0, false
		}
		seen[[2]int{w, ord}] = kind
		return w, true
	}
	for _, p := range res.Placements {
		w, ok := entry("placed", p.Workload, p.Replica)
		if !ok {
			continue
		}
		n, ok := m.top.Node(p.Node)
		if !ok {
			bad("%s[%d]: no node %s", p.Workload, p.Replica, p.Node)
			continue
		}
		if host := m.top.HostName(n); p.Host != host {
			bad("%s[%d]: host %q, but node %s is on host %s", p.Workload, p.Replica, p.Host, p.Node, host)
		}
		t, err := tenancy.ParseTier(v1.Tier(p.Tier))
		if err != nil || t == tenancy.None {
			bad("%s[%d]: tier %q is not a tier", p.Workload, p.Replica, p.Tier)
			continue
		}
		reps = append(reps, rep{w: w, ord: p.Replica, node: n, tier: t})
	}
	for _, u := range res.Unplaced {
		entry("unplaced", u.Workload, u.Replica)
	}
	for w := range m.wls {
		for k := range m.wls[w].replicas {
			if _, ok := seen[[2]int{w, k}]; !ok {
				bad("%s[%d]: neither placed nor unplaced", m.wls[w].key, k)
			}
		}
	}
	return reps, out
}

// check reports every violation among reps through bad. With final=false
// reps is a partial assignment being extended (Exists) and only conditions
// that stay violated whatever is added later are checked: capacity counts
// requests without tier overhead, minDomains asks that enough replicas
// remain to reach it, and "==" affinity is left to the final check.
func (m *model) check(reps []rep, final bool, bad func(format string, args ...any)) {
	byWorkload := make([][]rep, len(m.wls))
	for _, r := range reps {
		byWorkload[r.w] = append(byWorkload[r.w], r)
	}

	// Each replica on its own node.
	for _, r := range reps {
		wl, n := &m.wls[r.w], &m.top.Nodes[r.node]
		if n.Down {
			bad("%s: node %s is down", m.name(r), n.Name)
		}
		if n.Tenant != "" && n.Tenant != wl.tenant {
			bad("%s: node %s is reserved for tenant %s", m.name(r), n.Name, n.Tenant)
		}
		if r.tier < wl.floor {
			bad("%s: tier %s is below its floor %s", m.name(r), r.tier, wl.floor)
		}
		if !m.runs(r.node, r.tier) {
			bad("%s: node %s does not run tier %s (runs %s)", m.name(r), n.Name, r.tier, n.Runtimes)
		}
		for _, p := range wl.residency {
			for level, allowed := range p.Domains {
				li, ok := m.top.Level(level)
				if !ok {
					bad("%s: residency level %s unknown", m.name(r), level)
					continue
				}
				if d := m.top.DomainName(r.node, li); !slices.Contains(allowed, d) {
					bad("%s: node %s is in %s %q, outside its residency %v", m.name(r), n.Name, level, d, allowed)
				}
			}
		}
	}

	// Capacity per node.
	used := map[int]amount{}
	for _, r := range reps {
		u := used[r.node].plus(m.wls[r.w].request)
		if final {
			u = u.plus(m.overhead[r.tier])
		}
		used[r.node] = u
	}
	for _, n := range sortedKeys(used) {
		if c := fromTopology(m.top.Nodes[n].Capacity); used[n].exceeds(c) {
			bad("node %s: %s allocated, capacity %s", m.top.Nodes[n].Name, used[n], c)
		}
	}

	// Every ordered pair on one physical host.
	byHost := map[int][]int{}
	for i, r := range reps {
		h := m.top.Nodes[r.node].Host
		byHost[h] = append(byHost[h], i)
	}
	for _, h := range sortedKeys(byHost) {
		for _, i := range byHost[h] {
			a := reps[i]
			for _, j := range byHost[h] {
				if i == j {
					continue
				}
				b := reps[j]
				host := m.top.Nodes[h].Name
				if m.wls[a.w].tenant != m.wls[b.w].tenant {
					if m.wls[a.w].dedicated {
						bad("%s is dedicated but shares host %s with %s", m.name(a), host, m.name(b))
					}
					if a.tier == tenancy.Host {
						bad("%s has tier host but shares host %s with %s", m.name(a), host, m.name(b))
					}
				}
				d := m.required(a.w, b.w)
				if eff := tenancy.Effective(a.tier, m.place(a.node), m.place(b.node)); eff < d.Tier {
					bad("%s → %s on host %s: effective %s < required %s (%s)", m.name(a), m.name(b), host, eff, d.Tier, d.Rule)
				}
			}
		}
	}

	// Hard spread, per workload.
	for w := range m.wls {
		wl := &m.wls[w]
		for _, s := range wl.spread {
			count := map[int32]int{}
			for _, r := range byWorkload[w] {
				d := m.top.Nodes[r.node].Domain[s.index]
				if d == topology.NoDomain {
					bad("%s: spread %s: node %s has no %s domain", m.name(r), s.level, m.top.Nodes[r.node].Name, s.level)
					continue
				}
				count[d]++
			}
			for _, d := range sortedKeys(count) {
				if s.max > 0 && count[d] > s.max {
					bad("%s: spread %s: %d replicas in %s, maxPerDomain %d", wl.key, s.level, count[d], m.top.Domains[s.index][d], s.max)
				}
			}
			placed := len(byWorkload[w])
			switch {
			case s.min == 0:
			case final && placed == wl.replicas && len(count) < s.min:
				bad("%s: spread %s: %d domains, minDomains %d", wl.key, s.level, len(count), s.min)
			case !final && len(count)+wl.replicas-placed < s.min:
				bad("%s: spread %s: %d domains and %d replicas left, minDomains %d", wl.key, s.level, len(count), wl.replicas-placed, s.min)
			}
		}
	}

	// Hard affinity, per replica, against the final placement.
	for _, r := range reps {
		for _, a := range m.wls[r.w].affinity {
			if a.same && !final {
				continue
			}
			d := m.top.Nodes[r.node].Domain[a.index]
			targets, here := 0, 0
			for _, o := range reps {
				if o == r || !a.targets[o.w] {
					continue
				}
				targets++
				if d != topology.NoDomain && m.top.Nodes[o.node].Domain[a.index] == d {
					here++
				}
			}
			switch {
			case a.same && targets > 0 && here == 0:
				bad("%s: affinity %s == %s: none of its %d placed replicas in %s %q", m.name(r), a.desc, a.level, targets, a.level, m.top.DomainName(r.node, a.index))
			case !a.same && here > 0:
				bad("%s: affinity %s != %s: %d of its replicas in %s %q", m.name(r), a.desc, a.level, here, a.level, m.top.DomainName(r.node, a.index))
			}
		}
	}
}

// sortedKeys returns the keys of a map with ordered keys, sorted.
func sortedKeys[K int | int32 | string, V any](mp map[K]V) []K {
	keys := make([]K, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
