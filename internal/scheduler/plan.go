package scheduler

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// ErrRule is returned when an operator rule fails to evaluate; the
// scheduler fails closed rather than guess a tier.
var ErrRule = errors.New("tenancy rule failed")

// Options tune one planning run.
type Options struct {
	// Explain, when set to a workload key (TENANT/NAME), records every
	// node's verdict for each of its replicas.
	Explain string
	// SearchBudget bounds the exhaustive fallback search (steps); 0 means
	// the default. Negative disables it.
	SearchBudget int
}

// Filters, in pipeline order. A node's verdict names the first that fails.
type filter uint8

const (
	fOK filter = iota
	fDown
	fNodeTenant
	fRuntime
	fDedicated
	fResidency
	fVolume
	fDisk
	fCapacity
	fSpread
	fAffinity
	fTenancy
	nFilters
)

var filterNames = [nFilters]string{"ok", "down", "node-tenant", "runtime", "dedicated", "residency", "volume", "disk", "capacity", "spread", "affinity", "tenancy"}

// Cost weights. Units are "core equivalents": 1 core = 4 GiB of memory.
const (
	startWeight  = 0.1 // cost of one second of start time
	softPenalty  = 1e6 // a broken soft rule costs more than opening a host
	fullnessBias = 0.01
	// openShare: a group needs this many hosts' worth of work left before
	// a host of its own costs nothing to open.
	openShare = 8.0
)

// verdict is the outcome of one (replica, node) evaluation. It carries
// indices, not text, so the hot path allocates nothing.
type verdict struct {
	filter filter
	detail int // spread or affinity index; tenancy: neighbour workload
	tier   tenancy.Tier
	need   tenancy.Tier // tier the tenancy invariant asked for
	cost   float64
	nraise int // raises recorded in planner.scratch
	// tenancy failure details
	dec  uint16 // decision index (reqCache)
	why  tenancyWhy
	soft int // broken soft rules
}

type tenancyWhy uint8

const (
	whyNone      tenancyWhy = iota
	whyFixed                // an existing neighbour can't be raised
	whyHostTier             // a host-tier neighbour of another tenant
	whyExclusive            // the replica needs tier host, others present
	whyNoRuntime            // the needed tier is not offered by the node
	whyRaiseNode            // a neighbour's node can't offer the raised tier
	whyCapacity             // the needed tier's overhead does not fit
	whyRaiseHost            // a raise to host is impossible with others present
)

// revRule is workload f's "!=" rule ai, seen from one of its targets.
type revRule struct {
	f     int32
	ai    int
	level int
	soft  bool
}

type raise struct {
	g  int32
	to tenancy.Tier
}

type planner struct {
	p       *Problem
	top     *topology.Topology
	nodes   []nodeState
	hosts   []hostState // indexed by node index; only physical nodes used
	groups  []group
	reps    []replica
	wl      []wlState
	req     reqCache
	tcost   [tenancy.Host + 1]float64
	scratch []raise
	best    []raise
	err     error
	pidsCap []bool

	levels []int // levels some spread or affinity looks at
	bound  int32 // workload whose counters spreadC and affC hold
	// deferSame skips "==" checks while placing (the search checks whole
	// plans instead).
	deferSame bool
	spreadC   []*counter
	revC      []*counter
	// revAff lists, per workload X, the "!=" rules of other workloads that
	// name X: X must keep out of their domains too, or a later X replica
	// would break a rule checked when the follower was placed.
	revAff   [][]revRule
	affC     [][]*counter
	minHostU float64 // smallest physical host, in units: the cheapest empty host
	hostOf   []int32 // node → physical host node, compact for the hot loop
	// minOverhead[n][t] is the component-wise least overhead of the tiers
	// ≥ t that node n runs: a lower bound for the capacity prefilter.
	minOverhead [][tenancy.Host + 1]topology.Resources
	shrunk      int       // raises shrink appended to scratch
	compat      []int32   // workload → compatible group (see compatGroups)
	remain      []float64 // group → units of its replicas not yet placed
	retarget    []raise   // raises shrink retargeted: scratch index, old tier
	keys        []string  // workload → "tenant/name"
	// ord is the replica (of the workload evaluated) whose volumes the
	// volume filter checks; set by whoever calls evaluate.
	ord      int32
	explain  int
	trace    *Explanation
	unplaced []Unplaced
}

// Plan places every replica of p. The result is deterministic.
func Plan(p *Problem, opts Options) (*Result, error) {
	pl := newPlanner(p)
	pl.explain = -1
	if opts.Explain != "" {
		for i := range p.Workloads {
			if p.Key(i) == opts.Explain {
				pl.explain = i
			}
		}
		if pl.explain < 0 {
			return nil, fmt.Errorf("explain %s: no such workload", opts.Explain)
		}
		pl.trace = &Explanation{Workload: opts.Explain}
	}
	if err := pl.addExisting(); err != nil {
		return nil, err
	}
	pl.compatGroups()
	pending := pl.order()
	var unplaced []int32
	for _, r := range pending {
		if !pl.place(r) {
			unplaced = append(unplaced, r)
		}
		if pl.err != nil {
			return nil, pl.err
		}
	}
	unplaced = pl.sameRepair(unplaced)
	if len(unplaced) > 0 && opts.SearchBudget >= 0 {
		if pl.search(opts.SearchBudget) {
			unplaced = nil
		}
	}
	pl.lower()
	for _, r := range unplaced {
		pl.unplaced = append(pl.unplaced, pl.diagnose(r))
	}
	return pl.result()
}

func newPlanner(p *Problem) *planner {
	top := p.Topology
	pl := &planner{
		p:     p,
		top:   top,
		nodes: make([]nodeState, len(top.Nodes)),
		hosts: make([]hostState, len(top.Nodes)),
		wl:    make([]wlState, len(p.Workloads)),
		req:   reqCache{index: map[tenancy.Decision]uint16{}},
	}
	for i, n := range top.Nodes {
		pl.hosts[n.Host].nodes = append(pl.hosts[n.Host].nodes, int32(i))
		pl.pidsCap = append(pl.pidsCap, n.Capacity.PIDs > 0)
	}
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		pl.tcost[t] = units(p.Overhead[t]) + p.StartSeconds[t]*startWeight
	}
	pl.bound = -1
	pl.req.prof = profiles(p)
	nprof := int32(0)
	for _, x := range pl.req.prof {
		nprof = max(nprof, x+1)
	}
	pl.req.rows = make([][]uint16, nprof)
	for i := range p.Workloads {
		pl.keys = append(pl.keys, p.Key(i))
	}
	for _, n := range top.Nodes {
		pl.hostOf = append(pl.hostOf, int32(n.Host))
		var mo [tenancy.Host + 1]topology.Resources
		const big = math.MaxInt64 / 4
		acc := topology.Resources{MilliCPU: big, Memory: big, PIDs: big}
		for t := tenancy.Host; t >= tenancy.None; t-- {
			if t >= tenancy.Container && n.Runtimes.Has(t) {
				o := p.Overhead[t]
				acc = topology.Resources{MilliCPU: min(acc.MilliCPU, o.MilliCPU), Memory: min(acc.Memory, o.Memory), PIDs: min(acc.PIDs, o.PIDs)}
			}
			mo[t] = acc
			if t == tenancy.None {
				break
			}
		}
		pl.minOverhead = append(pl.minOverhead, mo)
	}
	pl.minHostU = math.Inf(1)
	for i, n := range top.Nodes {
		if !n.VM {
			pl.minHostU = min(pl.minHostU, units(top.Nodes[i].Capacity))
		}
	}
	pl.revAff = make([][]revRule, len(p.Workloads))
	for f := range p.Workloads {
		for ai, a := range p.Workloads[f].Affinity {
			if a.Same {
				continue
			}
			for _, t := range a.Targets {
				if t != f {
					pl.revAff[t] = append(pl.revAff[t], revRule{f: int32(f), ai: ai, level: a.Level, soft: a.Soft})
				}
			}
		}
	}
	seen := map[int]bool{}
	for _, w := range p.Workloads {
		for _, s := range w.Spread {
			seen[s.Level] = true
		}
		for _, a := range w.Affinity {
			seen[a.Level] = true
		}
	}
	for l := range top.Levels {
		if seen[l] {
			pl.levels = append(pl.levels, l)
		}
	}
	for w := range p.Workloads {
		for k := 0; k < p.Workloads[w].Replicas; k++ {
			pl.reps = append(pl.reps, replica{w: int32(w), ord: int32(k), node: -1})
		}
	}
	return pl
}

// units converts resources to core equivalents.
func units(r topology.Resources) float64 {
	return float64(r.MilliCPU)/1000 + float64(r.Memory)/(4<<30)
}

// required returns the decision index of required(a→b).
func (pl *planner) required(a, b int32) uint16 {
	pa, pb := pl.req.prof[a], pl.req.prof[b]
	row := pl.req.rows[pa]
	if row == nil {
		row = make([]uint16, len(pl.req.rows))
		pl.req.rows[pa] = row
	}
	if k := row[pb]; k != 0 {
		return k
	}
	d, err := pl.p.Rules.Required(pl.p.Party(int(a)), pl.p.Party(int(b)))
	if err != nil {
		if pl.err == nil {
			pl.err = fmt.Errorf("%w: required(%s→%s): %w", ErrRule, pl.p.Key(int(a)), pl.p.Key(int(b)), err)
		}
		// Fail closed: an unknown requirement is the strongest one.
		d = tenancy.Decision{Tier: tenancy.Host, Rule: "rule error"}
	}
	k, ok := pl.req.index[d]
	if !ok {
		pl.req.decisions = append(pl.req.decisions, d)
		pl.req.tiers = append(pl.req.tiers, d.Tier)
		k = uint16(len(pl.req.decisions))
		pl.req.index[d] = k
	}
	row[pb] = k
	return k
}

// profiles maps workloads to rule profiles: workloads that every rule sees
// alike share one row of the required() memo. The default table looks at
// tenant, data class and privilege only; operator rules may look at
// workload names and labels, so then each workload is its own profile.
func profiles(p *Problem) []int32 {
	prof := make([]int32, len(p.Workloads))
	if len(p.Rules.Operator) > 0 {
		for i := range prof {
			prof[i] = int32(i)
		}
		return prof
	}
	type key struct {
		tenant           int
		class, privilege string
	}
	seen := map[key]int32{}
	for i := range p.Workloads {
		w := &p.Workloads[i]
		k := key{w.Tenant, w.DataClass, w.Privilege}
		id, ok := seen[k]
		if !ok {
			id = int32(len(seen))
			seen[k] = id
		}
		prof[i] = id
	}
	return prof
}

func (pl *planner) decision(k uint16) tenancy.Decision { return pl.req.decisions[k-1] }

// reqTier is the tier of decision k, without copying the decision.
func (pl *planner) reqTier(k uint16) tenancy.Tier { return pl.req.tiers[k-1] }

// offered returns the weakest tier ≥ t that node n can run, or None. The
// host tier (a hardened container on a host no other tenant uses) is only
// offered by nodes that list it: handing a whole machine to one tenant is
// the operator's decision.
func (pl *planner) offered(n int, t tenancy.Tier) tenancy.Tier {
	rt := pl.top.Nodes[n].Runtimes
	for ; t <= tenancy.Host; t++ {
		if rt.Has(t) {
			return t
		}
	}
	return tenancy.None
}

// addExisting pins the replicas of a previous plan that survived.
func (pl *planner) addExisting() error {
	for _, e := range pl.p.Existing {
		idx := -1
		for i, r := range pl.reps {
			if int(r.w) == e.Workload && int(r.ord) == e.Replica {
				idx = i
				break
			}
		}
		if idx < 0 || pl.reps[idx].fixed || e.Node < 0 || e.Node >= len(pl.top.Nodes) {
			continue // the workload shrank, or a duplicate entry
		}
		pl.reps[idx].fixed = true
		pl.commit(int32(idx), int32(e.Node), e.Tier, nil)
	}
	return nil
}

// order returns the replicas to place: hardest workloads first, affinity
// targets before the workloads that follow them, then by key.
func (pl *planner) order() []int32 {
	p := pl.p
	ws := make([]int, len(p.Workloads))
	for i := range ws {
		ws[i] = i
	}
	hard := func(i int) int {
		w := &p.Workloads[i]
		h := 0
		if w.Dedicated || w.DataClass == "restricted" || w.Floor == tenancy.Host {
			h += 4
		}
		for _, s := range w.Spread {
			if !s.Soft {
				h += 2
			}
		}
		for _, a := range w.Affinity {
			if !a.Soft {
				h++
			}
		}
		return h
	}
	keys := make([]string, len(ws))
	for i := range ws {
		keys[i] = p.Key(i)
	}
	sort.SliceStable(ws, func(a, b int) bool {
		ha, hb := hard(ws[a]), hard(ws[b])
		if ha != hb {
			return ha > hb
		}
		ua, ub := units(p.Workloads[ws[a]].Request), units(p.Workloads[ws[b]].Request)
		if ua != ub {
			return ua > ub
		}
		return keys[ws[a]] < keys[ws[b]]
	})
	// Move "==" targets ahead of their followers (depth-first, cycles cut).
	state := make([]uint8, len(ws))
	var out []int
	var visit func(i int)
	visit = func(i int) {
		if state[i] != 0 {
			return
		}
		state[i] = 1
		for _, a := range p.Workloads[i].Affinity {
			if a.Same && !a.Soft {
				for _, t := range a.Targets {
					if t != i {
						visit(t)
					}
				}
			}
		}
		state[i] = 2
		out = append(out, i)
	}
	for _, i := range ws {
		visit(i)
	}
	first := make([]int32, len(p.Workloads))
	for i := range first {
		first[i] = -1
	}
	for i, r := range pl.reps {
		if first[r.w] < 0 {
			first[r.w] = int32(i)
		}
	}
	var pending []int32
	for _, w := range out {
		for k := 0; k < p.Workloads[w].Replicas; k++ {
			i := first[w] + int32(k)
			if !pl.reps[i].fixed {
				pending = append(pending, i)
			}
		}
	}
	return pending
}

// place finds the cheapest feasible node and tier for replica r.
func (pl *planner) place(r int32) bool {
	w := pl.reps[r].w
	pl.ord = pl.reps[r].ord
	bestNode, bestCost := -1, math.Inf(1)
	var bestV verdict
	tracing := int(w) == pl.explain
	var verdicts []NodeVerdict
	// Every empty host costs at least lb; once one reaches it, later (higher
	// index) empty hosts can't win, so only occupied hosts are still worth
	// evaluating. This keeps a 5,000-node scan near the occupied hosts' size.
	lb := pl.minTierCost(pl.p.Workloads[w].Floor) + pl.minHostU
	emptyDone := false
	for n := range pl.top.Nodes {
		if pl.avoided(r, n) {
			continue
		}
		empty := pl.hosts[pl.hostOf[n]].count == 0
		if empty && emptyDone && !tracing {
			continue
		}
		v := pl.evaluate(w, n, true)
		if empty && v.filter == fOK && v.cost <= lb+1e-9 {
			emptyDone = true
		}
		if tracing {
			verdicts = append(verdicts, pl.nodeVerdict(w, n, v))
		}
		if v.filter != fOK {
			continue
		}
		if v.cost < bestCost {
			bestNode, bestCost, bestV = n, v.cost, v
			pl.best = append(pl.best[:0], pl.scratch[:v.nraise]...)
		}
	}
	if tracing {
		tr := ReplicaTrace{Replica: int(pl.reps[r].ord), Nodes: verdicts}
		if bestNode >= 0 {
			tr.Nodes[bestNode].Chosen = true
		}
		pl.trace.Replicas = append(pl.trace.Replicas, tr)
	}
	if bestNode < 0 {
		return false
	}
	pl.commit(r, int32(bestNode), bestV.tier, pl.best)
	return true
}

// avoided reports whether replica r must keep off node n (Problem.Avoid).
func (pl *planner) avoided(r int32, n int) bool {
	for _, a := range pl.p.Avoid {
		if a.Node == n && int32(a.Workload) == pl.reps[r].w && int32(a.Replica) == pl.reps[r].ord {
			return true
		}
	}
	return false
}

// compatGroups puts workloads into groups whose members need only
// containers between each other both ways (same organization, data class
// and privilege under the default table), and sums each group's unplaced
// demand. It only steers the cost of opening hosts; correctness never
// depends on it.
func (pl *planner) compatGroups() {
	p := pl.p
	pl.compat = make([]int32, len(p.Workloads))
	var reps []int32 // a representative workload per group
	for w := range p.Workloads {
		g := -1
		for i, r := range reps {
			if pl.reqTier(pl.required(int32(w), r)) <= tenancy.Container && pl.reqTier(pl.required(r, int32(w))) <= tenancy.Container {
				g = i
				break
			}
		}
		if g < 0 {
			g = len(reps)
			reps = append(reps, int32(w))
		}
		pl.compat[w] = int32(g)
	}
	pl.remain = make([]float64, len(reps))
	for _, r := range pl.reps {
		if r.node < 0 {
			pl.remain[pl.compat[r.w]] += units(p.Workloads[r.w].Request)
		}
	}
}

// minTierCost is the cheapest tier cost at or above floor (overheads are
// configurable, so the cheapest need not be the weakest).
func (pl *planner) minTierCost(floor tenancy.Tier) float64 {
	c := math.Inf(1)
	for t := max(floor, tenancy.Container); t <= tenancy.Host; t++ {
		c = min(c, pl.tcost[t])
	}
	return c
}

// evaluate runs the filter pipeline for a replica of workload w on node n
// and, when it passes, the tier and cost. With score=false it stops at
// feasibility (used by diagnostics, which want every failing filter).
func (pl *planner) evaluate(w int32, n int, score bool) verdict {
	p, node := pl.p, &pl.top.Nodes[n]
	wl := &p.Workloads[w]
	tenant := int32(wl.Tenant)
	if node.Down {
		return verdict{filter: fDown}
	}
	if node.Tenant != "" && node.Tenant != p.Tenants[tenant].Name {
		return verdict{filter: fNodeTenant}
	}
	minTier := pl.offered(n, wl.Floor)
	if minTier == tenancy.None {
		return verdict{filter: fRuntime}
	}
	host := &pl.hosts[node.Host]
	if v, bad := pl.dedication(w, host); bad {
		return v
	}
	if i, ok := pl.resident(w, n); !ok {
		return verdict{filter: fResidency, detail: i}
	}
	if !pl.volumeOK(w, pl.ord, n) {
		return verdict{filter: fVolume, detail: int(pl.ord)}
	}
	if !pl.diskOK(w, pl.ord, n) {
		return verdict{filter: fDisk, detail: int(pl.ord)}
	}
	free := node.Capacity.Sub(pl.nodes[n].used)
	// A quick bound; the exact check (which may shrink neighbours'
	// overhead) is in tenancyCheck, which the exhaustive search always runs.
	if !pl.deferSame && !wl.Request.Add(pl.minOverhead[n][wl.Floor]).Fits(free, pl.pidsCap[n]) {
		return verdict{filter: fCapacity, tier: minTier}
	}
	soft := 0
	pl.bind(w)
	for i, s := range wl.Spread {
		ok := pl.spreadOK(w, n, i)
		if !ok && !s.Soft {
			return verdict{filter: fSpread, detail: i}
		}
		if !ok {
			soft++
		}
	}
	for i, a := range wl.Affinity {
		ok := pl.affinityOK(w, n, i)
		if !ok && !a.Soft {
			return verdict{filter: fAffinity, detail: i}
		}
		if !ok {
			soft++
		}
	}
	for i, rr := range pl.revAff[w] {
		if d := pl.top.Nodes[n].Domain[rr.level]; d != topology.NoDomain && pl.revC[i].get(d) > 0 {
			if !rr.soft {
				return verdict{filter: fAffinity, detail: -(i + 1)}
			}
			soft++
		}
	}
	v := pl.tenancyCheck(w, n, minTier, free)
	if v.filter != fOK || !score {
		return v
	}
	v.soft = soft
	v.cost = pl.cost(w, n, v, soft)
	return v
}

func (pl *planner) dedication(w int32, host *hostState) (verdict, bool) {
	wl := &pl.p.Workloads[w]
	tenant := int32(wl.Tenant)
	for _, tc := range host.tenants {
		if tc.tenant == tenant || tc.n == 0 {
			continue
		}
		if wl.Dedicated {
			return verdict{filter: fDedicated, detail: int(tc.tenant)}, true
		}
		if tc.dedicated > 0 {
			return verdict{filter: fDedicated, detail: int(tc.tenant)}, true
		}
	}
	return verdict{}, false
}

// bind resolves the counters workload w's spread and affinity rules read,
// once per workload instead of once per node.
func (pl *planner) bind(w int32) {
	if pl.bound == w {
		return
	}
	pl.bound = w
	wl := &pl.p.Workloads[w]
	pl.spreadC = pl.spreadC[:0]
	for _, s := range wl.Spread {
		pl.spreadC = append(pl.spreadC, pl.wl[w].level(s.Level))
	}
	pl.revC = pl.revC[:0]
	for _, rr := range pl.revAff[w] {
		pl.revC = append(pl.revC, pl.wl[rr.f].level(rr.level))
	}
	pl.affC = pl.affC[:0]
	for _, a := range wl.Affinity {
		var cs []*counter
		for _, t := range a.Targets {
			cs = append(cs, pl.wl[t].level(a.Level))
		}
		pl.affC = append(pl.affC, cs)
	}
}

// spreadOK checks spread entry i of w for placing a replica on node n.
func (pl *planner) spreadOK(w int32, n int, i int) bool {
	s := &pl.p.Workloads[w].Spread[i]
	d := pl.top.Nodes[n].Domain[s.Level]
	if d == topology.NoDomain {
		return false
	}
	c := pl.spreadC[i]
	cnt := c.get(d)
	if s.MaxPerDomain > 0 && int(cnt) >= s.MaxPerDomain {
		return false
	}
	if s.MinDomains > 0 {
		if s.Soft {
			// Prefer a new domain until enough are used.
			return cnt == 0 || c.distinct >= s.MinDomains
		}
		remaining := pl.p.Workloads[w].Replicas - pl.wl[w].placed - 1
		distinct := c.distinct
		if cnt == 0 {
			distinct++
		}
		if distinct+remaining < s.MinDomains {
			return false
		}
	}
	return true
}

// affinityOK checks affinity rule i of w for a replica on node n. A "=="
// rule whose targets have no placed replica yet is met: the first replica
// chooses the domain.
func (pl *planner) affinityOK(w int32, n int, i int) bool {
	a := &pl.p.Workloads[w].Affinity[i]
	d := pl.top.Nodes[n].Domain[a.Level]
	total, here := 0, int32(0)
	for k, t := range a.Targets {
		if d != topology.NoDomain {
			here += pl.affC[i][k].get(d)
		}
		total += pl.wl[t].placed
	}
	if a.Same {
		return pl.deferSame || total == 0 || here > 0
	}
	return here == 0
}

// tenancyCheck computes the weakest tier that keeps the invariant for every
// pair on n's physical host, and the raises of this plan's earlier replicas
// it needs. Raises are written to pl.scratch.
func (pl *planner) tenancyCheck(w int32, n int, minTier tenancy.Tier, free topology.Resources) verdict {
	p, top := pl.p, pl.top
	node := &top.Nodes[n]
	host := &pl.hosts[node.Host]
	tenant := int32(p.Workloads[w].Tenant)
	need := minTier
	var needDec uint16
	needFrom := -1
	pl.scratch = pl.scratch[:0]
	for _, m := range host.nodes {
		ms := &pl.nodes[m]
		if len(ms.groups) == 0 {
			continue
		}
		mVM := top.Nodes[m].VM
		fwd, rev := tenancy.None, tenancy.None
		if int(m) != n {
			if node.VM {
				fwd = tenancy.VM
			}
			if mVM {
				rev = tenancy.VM
			}
		}
		for _, gi := range ms.groups {
			g := &pl.groups[gi]
			if len(g.reps) == 0 {
				continue
			}
			if g.tier == tenancy.Host && int32(p.Workloads[g.w].Tenant) != tenant {
				return verdict{filter: fTenancy, why: whyHostTier, detail: int(g.w)}
			}
			k := pl.required(w, g.w)
			if t := pl.reqTier(k); t > fwd && t > need {
				need, needDec, needFrom = t, k, int(g.w)
			}
			k = pl.required(g.w, w)
			rt := pl.reqTier(k)
			if tenancy.Max(g.tier, rev) >= rt {
				continue
			}
			if g.fixed {
				return verdict{filter: fTenancy, why: whyFixed, detail: int(g.w), dec: k}
			}
			to := pl.offered(int(m), rt)
			if to == tenancy.None {
				return verdict{filter: fTenancy, why: whyRaiseNode, detail: int(g.w), dec: k, need: rt}
			}
			if to == tenancy.Host && host.others(int32(p.Workloads[g.w].Tenant)) || to == tenancy.Host && int32(p.Workloads[g.w].Tenant) != tenant {
				return verdict{filter: fTenancy, why: whyRaiseHost, detail: int(g.w), dec: k}
			}
			pl.scratch = append(pl.scratch, raise{g: gi, to: to})
		}
	}
	if pl.offered(n, need) == tenancy.None {
		return verdict{filter: fTenancy, why: whyNoRuntime, detail: needFrom, dec: needDec, need: need}
	}
	// Raised neighbours' extra overhead, on n and on other nodes.
	var raiseHere topology.Resources
	var perNode map[int32]topology.Resources
	for _, r := range pl.scratch {
		g := &pl.groups[r.g]
		delta := p.Overhead[r.to].Sub(p.Overhead[g.tier])
		cnt := int64(len(g.reps))
		delta = topology.Resources{MilliCPU: delta.MilliCPU * cnt, Memory: delta.Memory * cnt, PIDs: delta.PIDs * cnt}
		if int(g.node) == n {
			raiseHere = raiseHere.Add(delta)
			continue
		}
		if perNode == nil {
			perNode = map[int32]topology.Resources{}
		}
		perNode[g.node] = perNode[g.node].Add(delta)
	}
	for m, delta := range perNode {
		mfree := top.Nodes[m].Capacity.Sub(pl.nodes[m].used)
		if !delta.Fits(mfree, pl.pidsCap[m]) {
			return verdict{filter: fTenancy, why: whyCapacity, tier: need, detail: needFrom, dec: needDec, need: need}
		}
	}
	// The weakest tier at or above need that the node runs and that fits:
	// overheads are configurable, so a stronger tier may be the one that
	// fits (host has none by default).
	if v, ok := pl.pickTier(w, n, need, free, raiseHere, host, tenant); ok {
		v.nraise, v.detail, v.dec = len(pl.scratch), needFrom, needDec
		return v
	}
	// Still no room: move this plan's replicas on n to a stronger tier with
	// less overhead (only upwards, so no invariant can break), then retry.
	want := p.Workloads[w].Request.Add(p.Overhead[pl.offered(n, need)]).Add(raiseHere).Sub(free)
	short := topology.Resources{MilliCPU: max(0, want.MilliCPU), Memory: max(0, want.Memory), PIDs: max(0, want.PIDs)}
	if !pl.pidsCap[n] {
		short.PIDs = 0
	}
	if saved, ok := pl.shrink(n, tenant, host, short); ok {
		if v, ok := pl.pickTier(w, n, need, free, raiseHere.Sub(saved), host, tenant); ok {
			v.nraise, v.detail, v.dec = len(pl.scratch), needFrom, needDec
			return v
		}
		pl.undoShrink()
	}
	why := whyNoRuntime
	for t := need; t <= tenancy.Host; t++ {
		if !node.Runtimes.Has(t) {
			continue
		}
		if t == tenancy.Host && host.others(tenant) {
			why = whyExclusive
			continue
		}
		if !p.Workloads[w].Request.Add(p.Overhead[t]).Add(raiseHere).Fits(free, pl.pidsCap[n]) {
			why = whyCapacity
			continue
		}
		return verdict{filter: fOK, tier: t, need: need, nraise: len(pl.scratch), detail: needFrom, dec: needDec}
	}
	return verdict{filter: fTenancy, why: why, tier: pl.offered(n, need), detail: needFrom, dec: needDec, need: need}
}

// pickTier returns the weakest tier ≥ need that node n runs, keeps a host
// tier exclusive, and fits with extra overhead already committed on n.
func (pl *planner) pickTier(w int32, n int, need tenancy.Tier, free, extra topology.Resources, host *hostState, tenant int32) (verdict, bool) {
	node := &pl.top.Nodes[n]
	req := pl.p.Workloads[w].Request.Add(extra)
	for t := need; t <= tenancy.Host; t++ {
		if !node.Runtimes.Has(t) || (t == tenancy.Host && host.others(tenant)) {
			continue
		}
		if req.Add(pl.p.Overhead[t]).Fits(free, pl.pidsCap[n]) {
			return verdict{filter: fOK, tier: t, need: need}, true
		}
	}
	return verdict{}, false
}

// shrink proposes moving movable groups on node n (of this plan) to the
// stronger tier the node runs with the least overhead (in core
// equivalents), when that is less than the tier they have or are being
// raised to. Groups already raised have their raise retargeted; others get
// a new raise. It returns the overhead freed; undoShrink reverts it.
func (pl *planner) shrink(n int, tenant int32, host *hostState, short topology.Resources) (topology.Resources, bool) {
	p, node := pl.p, &pl.top.Nodes[n]
	var saved topology.Resources
	pl.shrunk = 0
	pl.retarget = pl.retarget[:0]
	for _, gi := range pl.nodes[n].groups {
		g := &pl.groups[gi]
		if g.fixed || len(g.reps) == 0 {
			continue
		}
		k := slices.IndexFunc(pl.scratch, func(r raise) bool { return r.g == gi })
		base := g.tier
		if k >= 0 {
			base = pl.scratch[k].to
		}
		cur := p.Overhead[base]
		best, bestT := cur, tenancy.None
		gt := int32(p.Workloads[g.w].Tenant)
		for t := base + 1; t <= tenancy.Host; t++ {
			if !node.Runtimes.Has(t) || (t == tenancy.Host && (gt != tenant || host.others(gt))) {
				continue
			}
			// The heuristic: the tier that frees most of what is short;
			// the caller checks that the result really fits.
			if o := p.Overhead[t]; gain(cur, o, short) > gain(cur, best, short) {
				best, bestT = o, t
			}
		}
		if bestT == tenancy.None {
			continue
		}
		d := cur.Sub(best)
		cnt := int64(len(g.reps))
		saved = saved.Add(topology.Resources{MilliCPU: d.MilliCPU * cnt, Memory: d.Memory * cnt, PIDs: d.PIDs * cnt})
		if k >= 0 {
			pl.retarget = append(pl.retarget, raise{g: int32(k), to: pl.scratch[k].to})
			pl.scratch[k].to = bestT
			continue
		}
		pl.scratch = append(pl.scratch, raise{g: gi, to: bestT})
		pl.shrunk++
	}
	return saved, pl.shrunk > 0 || len(pl.retarget) > 0
}

// gain is how much of the shortfall moving from overhead cur to o frees,
// as a sum of fractions of each short resource.
func gain(cur, o, short topology.Resources) float64 {
	g := 0.0
	if short.MilliCPU > 0 {
		g += float64(cur.MilliCPU-o.MilliCPU) / float64(short.MilliCPU)
	}
	if short.Memory > 0 {
		g += float64(cur.Memory-o.Memory) / float64(short.Memory)
	}
	if short.PIDs > 0 {
		g += float64(cur.PIDs-o.PIDs) / float64(short.PIDs)
	}
	return g
}

// undoShrink reverts the last shrink.
func (pl *planner) undoShrink() {
	pl.scratch = pl.scratch[:len(pl.scratch)-pl.shrunk]
	for _, r := range pl.retarget {
		pl.scratch[r.g].to = r.to // r.g holds the scratch index here
	}
	pl.shrunk, pl.retarget = 0, pl.retarget[:0]
}

// cost is the price of placing a replica of w on n at v.tier: the tier's
// overhead and start time, the raises it causes, opening an empty host,
// the whole unused host for tier host, and broken soft rules; fuller nodes
// win ties (packing).
func (pl *planner) cost(w int32, n int, v verdict, soft int) float64 {
	p, node := pl.p, &pl.top.Nodes[n]
	c := pl.tcost[v.tier]
	for _, r := range pl.scratch[:v.nraise] {
		g := &pl.groups[r.g]
		c += float64(len(g.reps)) * (pl.tcost[r.to] - pl.tcost[g.tier])
	}
	host := &pl.hosts[node.Host]
	hostNode := &pl.top.Nodes[node.Host]
	if host.count == 0 {
		// Opening a host costs its capacity, less what the replica's
		// compatible group (replicas that need only containers next to
		// it) still has to place there: an organization with a host's
		// worth of work left gets hosts of its own at container rather
		// than paying vm overhead on shared ones.
		open := units(hostNode.Capacity)
		c += open * max(0, 1-pl.remain[pl.compat[w]]/(openShare*open))
	}
	if v.tier == tenancy.Host {
		tc := int32(p.Workloads[w].Tenant)
		already := false
		for _, t := range host.tenants {
			if t.tenant == tc && t.hostTier > 0 {
				already = true
			}
		}
		if !already {
			used := pl.nodes[node.Host].used.Add(p.Workloads[w].Request)
			c += math.Max(0, units(hostNode.Capacity.Sub(used)))
		}
	}
	c += float64(soft) * softPenalty
	capU := units(node.Capacity)
	if capU > 0 {
		c -= fullnessBias * units(pl.nodes[n].used) / capU
	}
	return c
}

// commit places replica r on node n at tier, applying raises.
func (pl *planner) commit(r, n int32, tier tenancy.Tier, raises []raise) {
	p := pl.p
	rep := &pl.reps[r]
	w := &p.Workloads[rep.w]
	for _, rs := range raises {
		g := &pl.groups[rs.g]
		delta := p.Overhead[rs.to].Sub(p.Overhead[g.tier])
		for range g.reps {
			pl.nodes[g.node].used = pl.nodes[g.node].used.Add(delta)
		}
		for _, ri := range g.reps {
			pl.reps[ri].tier = rs.to
		}
		g.tier = rs.to
	}
	rep.node, rep.tier = n, tier
	ns := &pl.nodes[n]
	ns.used = ns.used.Add(w.Request).Add(p.Overhead[tier])
	if p.Disk != nil {
		need, _ := w.charge(rep.ord)
		pl.nodes[p.diskNode(int(n))].disk += need
	}
	gi := int32(-1)
	for _, k := range ns.groups {
		g := &pl.groups[k]
		if g.w == rep.w && g.tier == tier && g.fixed == rep.fixed {
			gi = k
			break
		}
	}
	if gi < 0 {
		gi = int32(len(pl.groups))
		pl.groups = append(pl.groups, group{node: n, w: rep.w, tier: tier, fixed: rep.fixed})
		ns.groups = append(ns.groups, gi)
	}
	pl.groups[gi].reps = append(pl.groups[gi].reps, r)
	host := &pl.hosts[pl.top.Nodes[n].Host]
	host.count++
	tc := host.tenant(int32(w.Tenant))
	tc.n++
	if w.Dedicated {
		tc.dedicated++
	}
	if tier == tenancy.Host {
		tc.hostTier++
	}
	if pl.remain != nil {
		pl.remain[pl.compat[rep.w]] -= units(w.Request)
	}
	ws := &pl.wl[rep.w]
	ws.placed++
	for _, l := range pl.levels {
		if d := pl.top.Nodes[n].Domain[l]; d != topology.NoDomain {
			ws.level(l).inc(d)
		}
	}
}
