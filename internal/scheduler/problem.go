// Package scheduler places replicas on nodes and chooses each replica's tier
// jointly: the cheapest tiers that keep effective(a→b) ≥ required(a→b) for
// every pair on a physical host, under capacity, runtime, dedication, spread
// and affinity filters. It is pure and deterministic: the same Problem gives
// the same Result.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// Problem is everything the scheduler needs, already indexed.
type Problem struct {
	Topology  *topology.Topology
	Tenants   []Tenant
	Workloads []Workload
	Rules     *tenancy.Rules
	// Overhead is the per-replica resource overhead of each tier.
	Overhead [tenancy.Host + 1]topology.Resources
	// StartSeconds is the typical start time of each tier, part of its cost.
	StartSeconds [tenancy.Host + 1]float64
	// Existing replicas stay where they are (rung plan --from).
	Existing []Existing
	// Avoid keeps replicas off nodes (a noisy neighbour moved away,
	// DESIGN §12): the greedy placement never puts them there.
	Avoid []Avoid
	// Disk is each node's room for volumes (SetDisk), by node index; nil
	// (or a nil entry) is a node whose disk is not known: not checked.
	Disk []*Disk
	// diskAt is, by node, the node whose state counts what a plan puts
	// on its disk (itself, or the first node of a shared disk).
	diskAt []int32
}

// Tenant is a tenant as the scheduler sees it.
type Tenant struct {
	Name         string
	Organization string
	Trust        string
	Labels       map[string]string
	Dedicated    bool
	Floor        tenancy.Tier
}

// Workload is one workload's placement request.
type Workload struct {
	Tenant    int
	Name      string
	Labels    map[string]string
	Replicas  int
	Request   topology.Resources
	DataClass string
	Privilege string
	// Floor is the stronger of the tenant's and the workload's minimum.
	Floor       tenancy.Tier
	FloorSource string
	Dedicated   bool
	Spread      []Spread
	Affinity    []Affinity
	// Residency limits where the replicas go (residency.go); Volumes
	// are what they mount and Pinned, by replica, where those are bound.
	Residency []Residency
	Volumes   []VolumeUse
	Pinned    []Pin
	party     tenancy.Party
}

// Spread is a resolved spread request.
type Spread struct {
	Level        int
	LevelName    string
	MinDomains   int
	MaxPerDomain int
	Soft         bool
}

// Affinity is a resolved affinity rule: Targets are workload indices.
type Affinity struct {
	Targets   []int
	Desc      string // e.g. "workload db"
	Same      bool   // "==" when true, "!=" when false
	Level     int
	LevelName string
	Soft      bool
}

// Avoid keeps replica Replica of workload Workload off node Node.
type Avoid struct {
	Workload, Replica, Node int
}

// Existing is a replica that already runs and must not move or change tier.
type Existing struct {
	Workload int
	Replica  int
	Node     int
	Tier     tenancy.Tier
}

// Default per-tier costs, from measurements on the development machine
// (see README, "rung bench"): gVisor's sentry and gofer, and a micro-VM's
// guest kernel, cost memory; start times are start-to-exit of /bin/true.
var (
	DefaultOverhead = [tenancy.Host + 1]topology.Resources{
		tenancy.Sandbox: {MilliCPU: 0, Memory: 64 << 20},
		tenancy.VM:      {MilliCPU: 100, Memory: 160 << 20},
	}
	DefaultStartSeconds = [tenancy.Host + 1]float64{
		tenancy.Container: 0.05, tenancy.Sandbox: 0.3, tenancy.VM: 1.0, tenancy.Host: 0.05,
	}
)

// Key returns "tenant/name" of workload i.
func (p *Problem) Key(i int) string {
	w := &p.Workloads[i]
	return p.Tenants[w.Tenant].Name + "/" + w.Name
}

// NewProblem converts a validated manifest set into a Problem. rules carries
// the compiled operator rules (nil: default table only).
func NewProblem(set *v1.Set, rules *tenancy.Rules, defaultRuntimes tenancy.Set) (*Problem, error) {
	top, err := topology.Build(set.Topologies, defaultRuntimes)
	if err != nil {
		return nil, err
	}
	if rules == nil {
		rules = &tenancy.Rules{}
	}
	p := &Problem{Topology: top, Rules: rules, Overhead: DefaultOverhead, StartSeconds: DefaultStartSeconds}
	for _, pol := range set.Policies {
		for name, r := range pol.Spec.TierOverhead {
			t, err := tenancy.ParseTier(name)
			if err != nil || t == tenancy.None {
				return nil, fmt.Errorf("policy %s: tierOverhead: %w", pol.Metadata.Name, err)
			}
			p.Overhead[t] = topology.FromV1(r)
		}
	}
	tenantIdx := map[string]int{}
	for _, t := range set.Tenants {
		floor, err := tenancy.ParseTier(t.Spec.Isolation.Minimum)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: isolation.minimum: %w", t.Metadata.Name, err)
		}
		org := t.Spec.Organization
		if org == "" {
			org = t.Metadata.Name
		}
		trust := string(t.Spec.Trust)
		if trust == "" {
			trust = string(v1.TrustUntrusted)
		}
		tenantIdx[t.Metadata.Name] = len(p.Tenants)
		p.Tenants = append(p.Tenants, Tenant{
			Name: t.Metadata.Name, Organization: org, Trust: trust,
			Labels: t.Metadata.Labels, Dedicated: t.Spec.Dedicated, Floor: floor,
		})
	}
	wlIdx := map[string]int{}
	for _, w := range set.Workloads {
		ti, ok := tenantIdx[w.Metadata.Tenant]
		if !ok {
			return nil, fmt.Errorf("workload %s: tenant %q is not defined", w.Metadata.Name, w.Metadata.Tenant)
		}
		wlIdx[w.Metadata.Tenant+"/"+w.Metadata.Name] = len(p.Workloads)
		// Labels first: label affinities of earlier workloads select later ones.
		p.Workloads = append(p.Workloads, Workload{Tenant: ti, Name: w.Metadata.Name, Labels: w.Metadata.Labels})
	}
	placements := map[string]v1.Placement{}
	for _, t := range set.Tenants {
		placements[t.Metadata.Name] = t.Spec.Placement
	}
	for i, w := range set.Workloads {
		res, err := p.residency(placements[w.Metadata.Tenant], w.Spec.Placement)
		if err != nil {
			return nil, fmt.Errorf("workload %s/%s: %w", w.Metadata.Tenant, w.Metadata.Name, err)
		}
		p.Workloads[i].Residency = res
		p.Workloads[i].Volumes = volumeUses(set, &w)
		for _, u := range p.Workloads[i].Volumes {
			if u.Restricted {
				w.Spec.DataClass = v1.DataRestricted // rule 1 keeps it off others' hardware
			}
		}
		if err := p.fillWorkload(i, &w, wlIdx); err != nil {
			return nil, fmt.Errorf("workload %s/%s: %w", w.Metadata.Tenant, w.Metadata.Name, err)
		}
	}
	return p, nil
}

func (p *Problem) fillWorkload(i int, w *v1.Workload, wlIdx map[string]int) error {
	pw := &p.Workloads[i]
	tn := &p.Tenants[pw.Tenant]
	pw.Replicas = 1
	if w.Spec.Replicas != nil {
		pw.Replicas = *w.Spec.Replicas
	}
	pw.Request = topology.FromV1(w.Spec.Resources)
	pw.DataClass = string(w.Spec.DataClass)
	if pw.DataClass == "" {
		pw.DataClass = string(v1.DataInternal)
	}
	pw.Privilege = string(w.Spec.Privilege)
	if pw.Privilege == "" {
		pw.Privilege = string(v1.PrivilegeStandard)
	}
	wf, err := tenancy.ParseTier(w.Spec.Isolation.Minimum)
	if err != nil {
		return fmt.Errorf("isolation.minimum: %w", err)
	}
	pw.Floor, pw.FloorSource = tenancy.Container, ""
	if tn.Floor > pw.Floor {
		pw.Floor, pw.FloorSource = tn.Floor, "tenant "+tn.Name+" minimum "+tn.Floor.String()
	}
	if wf > pw.Floor {
		pw.Floor, pw.FloorSource = wf, "workload minimum "+wf.String()
	}
	pw.Dedicated = w.Spec.Dedicated || tn.Dedicated
	top := p.Topology
	for _, s := range w.Spec.Spread {
		li, ok := top.Level(s.Level)
		if !ok {
			return fmt.Errorf("spread: unknown level %q", s.Level)
		}
		pw.Spread = append(pw.Spread, Spread{Level: li, LevelName: s.Level, MinDomains: s.MinDomains, MaxPerDomain: s.MaxPerDomain, Soft: s.Soft})
	}
	for _, a := range w.Spec.Affinity {
		li, ok := top.Level(a.Level)
		if !ok {
			return fmt.Errorf("affinity: unknown level %q", a.Level)
		}
		aff := Affinity{Same: a.Op == "==", Level: li, LevelName: a.Level, Soft: a.Soft}
		switch {
		case a.Workload != "":
			// A bare name is a workload of the same tenant, like Triton's
			// affinity, which only ever sees the owner's instances.
			key := a.Workload
			if !strings.Contains(key, "/") {
				key = tn.Name + "/" + key
			}
			aff.Desc = "workload " + a.Workload
			if j, ok := wlIdx[key]; ok {
				aff.Targets = []int{j}
			}
		case a.Tenant != "":
			aff.Desc = "tenant " + a.Tenant
			for j := range p.Workloads {
				if p.Tenants[p.Workloads[j].Tenant].Name == a.Tenant {
					aff.Targets = append(aff.Targets, j)
				}
			}
		case a.Label != "":
			aff.Desc = "label " + a.Label
			k, v, _ := strings.Cut(a.Label, "=")
			for j := range p.Workloads {
				// Labels select only the tenant's own workloads.
				if p.Workloads[j].Tenant == pw.Tenant && p.Workloads[j].Labels[k] == v {
					if _, has := p.Workloads[j].Labels[k]; has {
						aff.Targets = append(aff.Targets, j)
					}
				}
			}
		}
		sort.Ints(aff.Targets)
		pw.Affinity = append(pw.Affinity, aff)
	}
	pw.party = tenancy.Party{
		Tenant: tn.Name, Organization: tn.Organization, Trust: tn.Trust, TenantLabels: tn.Labels,
		Workload: pw.Name, WorkloadLabels: pw.Labels, DataClass: pw.DataClass, Privilege: pw.Privilege,
	}
	return nil
}

// Party returns the rule-facing description of workload i.
func (p *Problem) Party(i int) *tenancy.Party { return &p.Workloads[i].party }

// ProblemOf compiles the set's operator rules and builds the problem
// (nodes without runtimes get defaultRuntimes), for callers that adjust
// it (Keep, MarkDown, Topology.Detected) before planning.
func ProblemOf(set *v1.Set, defaultRuntimes tenancy.Set) (*Problem, error) {
	rules, err := tenancy.FromPolicies(set.Policies)
	if err != nil {
		return nil, err
	}
	return NewProblem(set, rules, defaultRuntimes)
}

// PlanSet is `rung plan` in one call: ProblemOf, then Plan.
func PlanSet(set *v1.Set, defaultRuntimes tenancy.Set, opts Options) (*Problem, *Result, error) {
	p, err := ProblemOf(set, defaultRuntimes)
	if err != nil {
		return nil, nil, err
	}
	res, err := Plan(p, opts)
	return p, res, err
}
