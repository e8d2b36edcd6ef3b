package bruteforce

import (
	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
)

// Exists reports whether any placement of every replica of set satisfies
// every hard constraint (as Check defines them), by exhaustive search over
// node assignments. Tiers follow from an assignment: each replica takes the
// weakest tier that satisfies its floor and the invariant towards its
// neighbours, then the weakest tier its node runs at or above that.
//
// The search visits at most limit (replica, node) choices; complete is false
// when it stopped at the limit without finding a placement, in which case
// found says nothing. Replicas of one workload are interchangeable, so they
// take nodes in non-decreasing order; a partial assignment is abandoned as
// soon as it breaks a condition that no later replica can repair.
func Exists(set *v1.Set, rules *tenancy.Rules, limit int) (found, complete bool) {
	m, err := newModel(set, rules)
	if err != nil {
		return false, true
	}
	var todo []rep
	for w := range m.wls {
		for k := range m.wls[w].replicas {
			todo = append(todo, rep{w: w, ord: k})
		}
	}
	cur := make([]rep, 0, len(todo))
	steps, stopped := 0, false
	var dfs func(k int) bool
	dfs = func(k int) bool {
		if k == len(todo) {
			return m.valid(cur, true)
		}
		first := 0
		if k > 0 && todo[k-1].w == todo[k].w {
			first = cur[k-1].node
		}
		for n := first; n < len(m.top.Nodes); n++ {
			if steps >= limit {
				stopped = true
				return false
			}
			steps++
			cur = append(cur[:k], rep{w: todo[k].w, ord: todo[k].ord, node: n})
			if m.valid(cur, false) && dfs(k+1) {
				return true
			}
		}
		cur = cur[:k]
		return false
	}
	found = dfs(0)
	return found, found || !stopped
}

// valid gives every replica of reps its derived tier and reports whether
// check finds nothing wrong. For a full assignment it also tries every
// stronger tier the nodes run, since overheads are configurable and a
// stronger tier may be the one whose overhead fits.
func (m *model) valid(reps []rep, final bool) bool {
	need := make([]tenancy.Tier, len(reps))
	for i := range reps {
		need[i] = m.need(reps, i)
		reps[i].tier = m.offered(reps[i].node, need[i])
	}
	ok := func() bool {
		good := true
		m.check(reps, final, func(string, ...any) { good = false })
		return good
	}
	if ok() || !final {
		return ok()
	}
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(reps) {
			return ok()
		}
		for t := need[i]; t <= tenancy.Host; t++ {
			if m.runs(reps[i].node, t) {
				reps[i].tier = t
				if try(i + 1) {
					return true
				}
			}
		}
		return false
	}
	return try(0)
}
