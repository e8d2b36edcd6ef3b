package scheduler

import (
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// replica is one replica being planned.
type replica struct {
	w     int32
	ord   int32
	node  int32 // -1 while unplaced
	tier  tenancy.Tier
	fixed bool // an existing replica: never moved, never raised
}

// group is the replicas of one workload at one tier on one node. Tenancy
// checks walk groups, not replicas, so a host with 40 replicas of 3
// workloads costs 3 steps.
type group struct {
	node  int32
	w     int32
	tier  tenancy.Tier
	fixed bool
	reps  []int32
}

// nodeState is what is allocated on a node.
type nodeState struct {
	used topology.Resources
	// disk is the bytes of the volumes this plan creates on the node's
	// disk (on every node sharing it, when it is the first: Problem.diskAt).
	disk   int64
	groups []int32
}

// tenantCount is how many replicas of a tenant run on a host.
type tenantCount struct {
	tenant    int32
	n         int32
	dedicated int32 // replicas whose workload or tenant is dedicated
	hostTier  int32 // replicas at tier host
}

// hostState is per physical host: its nodes and the tenants on it.
type hostState struct {
	nodes   []int32
	count   int32
	tenants []tenantCount
}

func (h *hostState) tenant(t int32) *tenantCount {
	for i := range h.tenants {
		if h.tenants[i].tenant == t {
			return &h.tenants[i]
		}
	}
	h.tenants = append(h.tenants, tenantCount{tenant: t})
	return &h.tenants[len(h.tenants)-1]
}

// others reports whether a tenant other than t has replicas on the host.
func (h *hostState) others(t int32) bool {
	for _, tc := range h.tenants {
		if tc.tenant != t && tc.n > 0 {
			return true
		}
	}
	return false
}

// counter counts replicas per domain of one level.
type counter struct {
	m        map[int32]int32
	distinct int
}

func (c *counter) get(d int32) int32 { return c.m[d] }

func (c *counter) inc(d int32) {
	if c.m == nil {
		c.m = map[int32]int32{}
	}
	if c.m[d] == 0 {
		c.distinct++
	}
	c.m[d]++
}

// wlState is per workload: how many replicas are placed and where.
type wlState struct {
	placed int
	// byLevel counts the workload's replicas per domain, for every level
	// some spread or affinity looks at.
	byLevel map[int]*counter
}

func (s *wlState) level(l int) *counter {
	if s.byLevel == nil {
		s.byLevel = map[int]*counter{}
	}
	c := s.byLevel[l]
	if c == nil {
		c = &counter{}
		s.byLevel[l] = c
	}
	return c
}

// reqCache memoizes required(a→b) per ordered workload pair; rule
// evaluation (CEL) is far slower than a table lookup.
type reqCache struct {
	rows      [][]uint16 // by profile; 0 = not computed, k = decisions[k-1]
	prof      []int32    // workload → profile
	decisions []tenancy.Decision
	tiers     []tenancy.Tier // tiers[k-1] == decisions[k-1].Tier
	index     map[tenancy.Decision]uint16
}

func (c *counter) dec(d int32) {
	c.m[d]--
	if c.m[d] == 0 {
		delete(c.m, d)
		c.distinct--
	}
}
