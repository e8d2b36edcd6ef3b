package bruteforce

import (
	"fmt"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// FirstFit is the naive peer the scheduler's speed and packing are compared
// with: it places the replicas in input order, each on the first node in
// input order that is up, runs containers, has room for the request and
// keeps the workload's hard spreads (maxPerDomain, and enough replicas left
// for minDomains). It knows nothing of tenancy, floors, dedication or
// affinity: every replica is a container.
func FirstFit(set *v1.Set) (*scheduler.Result, error) {
	top, err := topology.Build(set.Topologies, topology.DefaultRuntimes)
	if err != nil {
		return nil, err
	}
	res := &scheduler.Result{Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}}
	used := make([]amount, len(top.Nodes))
	for _, w := range set.Workloads {
		key := w.Metadata.Tenant + "/" + w.Metadata.Name
		replicas := 1
		if w.Spec.Replicas != nil {
			replicas = *w.Spec.Replicas
		}
		request := amountOf(w.Spec.Resources)
		var spreads []spread
		for _, s := range w.Spec.Spread {
			li, ok := top.Level(s.Level)
			if !ok {
				return nil, fmt.Errorf("workload %s: spread: unknown level %q", key, s.Level)
			}
			if !s.Soft {
				spreads = append(spreads, spread{level: s.Level, index: li, min: s.MinDomains, max: s.MaxPerDomain})
			}
		}
		counts := make([]map[int32]int, len(spreads))
		for i := range counts {
			counts[i] = map[int32]int{}
		}
		fits := func(n, left int) bool {
			node := &top.Nodes[n]
			if node.Down || !node.Runtimes.Has(tenancy.Container) || used[n].plus(request).exceeds(fromTopology(node.Capacity)) {
				return false
			}
			for i, s := range spreads {
				d := node.Domain[s.index]
				if d == topology.NoDomain || (s.max > 0 && counts[i][d] >= s.max) {
					return false
				}
				distinct := len(counts[i])
				if counts[i][d] == 0 {
					distinct++
				}
				if s.min > 0 && distinct+left < s.min {
					return false
				}
			}
			return true
		}
		for k := range replicas {
			n := 0
			for n < len(top.Nodes) && !fits(n, replicas-k-1) {
				n++
			}
			if n == len(top.Nodes) {
				res.Unplaced = append(res.Unplaced, scheduler.Unplaced{Workload: key, Replica: k, Reasons: []string{"first fit: no node"}})
				continue
			}
			used[n] = used[n].plus(request)
			for i, s := range spreads {
				counts[i][top.Nodes[n].Domain[s.index]]++
			}
			res.Placements = append(res.Placements, scheduler.Placement{
				Workload: key, Replica: k, Tier: tenancy.Container.String(), Node: top.Nodes[n].Name, Host: top.HostName(n),
			})
		}
	}
	return res, nil
}

// Quality is how well a plan packs: the physical hosts it uses against a
// lower bound on the hosts any plan of the same replicas at the same tiers
// needs.
type Quality struct {
	Placed    int
	Unplaced  int
	HostsUsed int
	// LowerBound is the maximum over cpu, memory (and PIDs when every host
	// limits them) of ceil(sum of placed requests plus their tiers'
	// overhead / the largest physical host's capacity).
	LowerBound int
	// TenancyBound is a lower bound that also counts hosts nobody else may
	// share: every tenant with restricted or dedicated replicas needs hosts
	// of its own for them (at least its spread's one-per-host count), and
	// the rest fit on the remaining room (see Measure).
	TenancyBound int
}

// AboveTenancyPct is how far HostsUsed is above TenancyBound, in percent.
func (q Quality) AboveTenancyPct() float64 {
	if q.TenancyBound == 0 {
		return 0
	}
	return 100 * float64(q.HostsUsed-q.TenancyBound) / float64(q.TenancyBound)
}

// AbovePct is how far HostsUsed is above LowerBound, in percent.
func (q Quality) AbovePct() float64 {
	if q.LowerBound == 0 {
		return 0
	}
	return 100 * float64(q.HostsUsed-q.LowerBound) / float64(q.LowerBound)
}

// Measure computes the Quality of plan res for set.
func Measure(set *v1.Set, res *scheduler.Result) (Quality, error) {
	m, err := newModel(set, nil)
	if err != nil {
		return Quality{}, err
	}
	reps, bad := m.fromResult(res)
	if len(bad) > 0 {
		return Quality{}, fmt.Errorf("malformed plan: %s", bad[0])
	}
	var largest amount
	allPIDs := true
	for i, n := range m.top.Nodes {
		if n.VM || n.Host != i {
			continue
		}
		c := fromTopology(n.Capacity)
		largest = amount{max(largest.milliCPU, c.milliCPU), max(largest.memory, c.memory), max(largest.pids, c.pids)}
		allPIDs = allPIDs && c.pids > 0
	}
	var sum amount
	hosts := map[int]bool{}
	for _, r := range reps {
		sum = sum.plus(m.wls[r.w].request).plus(m.overhead[r.tier])
		hosts[m.top.Nodes[r.node].Host] = true
	}
	q := Quality{Placed: len(reps), Unplaced: len(res.Unplaced), HostsUsed: len(hosts)}
	q.LowerBound = max(ceilDiv(sum.milliCPU, largest.milliCPU), ceilDiv(sum.memory, largest.memory))
	if allPIDs {
		q.LowerBound = max(q.LowerBound, ceilDiv(sum.pids, largest.pids))
	}
	q.TenancyBound = m.tenancyBound(reps, sum, largest)
	return q, nil
}

// tenancyBound: replicas whose data is restricted, or whose workload or
// tenant is dedicated, share hosts with no other tenant, so each such
// tenant needs hosts of its own: at least its exclusive replicas' resources
// over a host's capacity, and at least ceil(replicas/maxPerDomain) for a
// hard host spread. Only the tenant's own other replicas may use the room
// left on those hosts; everything else needs the other hosts.
func (m *model) tenancyBound(reps []rep, sum, largest amount) int {
	type excl struct {
		sum  amount
		need int
	}
	per := map[string]*excl{}
	own := map[string]amount{} // each tenant's replicas that are not exclusive
	var exclSum amount
	for _, r := range reps {
		wl := &m.wls[r.w]
		if !wl.dedicated && wl.party.DataClass != string(v1.DataRestricted) {
			own[wl.tenant] = own[wl.tenant].plus(wl.request).plus(m.overhead[r.tier])
			continue
		}
		e := per[wl.tenant]
		if e == nil {
			e = &excl{}
			per[wl.tenant] = e
		}
		a := wl.request.plus(m.overhead[r.tier])
		e.sum = e.sum.plus(a)
		exclSum = exclSum.plus(a)
		for _, s := range wl.spread {
			if s.level == "host" && s.max > 0 {
				e.need = max(e.need, (wl.replicas+s.max-1)/s.max)
			}
		}
	}
	hosts := 0
	var room amount
	for t, e := range per {
		n := max(e.need, ceilDiv(e.sum.milliCPU, largest.milliCPU), ceilDiv(e.sum.memory, largest.memory))
		hosts += n
		o := own[t]
		room = room.plus(amount{min(o.milliCPU, int64(n)*largest.milliCPU-e.sum.milliCPU), min(o.memory, int64(n)*largest.memory-e.sum.memory), 0})
	}
	rest := sum.minus(exclSum).minus(room)
	return hosts + max(0, ceilDiv(max(0, rest.milliCPU), largest.milliCPU), ceilDiv(max(0, rest.memory), largest.memory))
}

func ceilDiv(a, b int64) int {
	if b <= 0 {
		return 0
	}
	return int((a + b - 1) / b)
}
