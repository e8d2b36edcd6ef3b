package bruteforce

import (
	"testing"

	"rung.dev/rung/internal/scheduler/gen"
)

// existsByLeaves is Exists without pruning or symmetry breaking: every
// assignment of every replica to every node, checked only when complete.
func existsByLeaves(m *model) bool {
	var todo []rep
	for w := range m.wls {
		for k := range m.wls[w].replicas {
			todo = append(todo, rep{w: w, ord: k})
		}
	}
	cur := make([]rep, len(todo))
	var dfs func(k int) bool
	dfs = func(k int) bool {
		if k == len(todo) {
			return m.valid(cur, true)
		}
		for n := range m.top.Nodes {
			cur[k] = rep{w: todo[k].w, ord: todo[k].ord, node: n}
			if dfs(k + 1) {
				return true
			}
		}
		return false
	}
	return dfs(0)
}

// TestExistsPruning checks that Exists' pruning and symmetry breaking
// lose no placement: on problems small enough to enumerate every
// assignment, it agrees with the plain enumeration.
func TestExistsPruning(t *testing.T) {
	size := gen.Size{MinNodes: 2, MaxNodes: 4, MaxTenants: 2, MaxWorkloads: 3, MaxReplicas: 2}
	seeds, found := 1500, 0
	if testing.Short() {
		seeds = 200
	}
	for seed := range int64(seeds) {
		set := gen.Random(seed, size)
		m, err := newModel(set, nil)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		want := existsByLeaves(m)
		got, complete := Exists(set, nil, 1<<30)
		if !complete || got != want {
			t.Errorf("seed %d: Exists = %v (complete %v), enumeration says %v", seed, got, complete, want)
		}
		if want {
			found++
		}
	}
	if found < seeds/4 || found > seeds*9/10 {
		t.Errorf("%d of %d problems have a placement: the generator should mix feasible and infeasible ones", found, seeds)
	}
}
