// Package bruteforce holds simple, obviously correct reference algorithms
// that the scheduler is tested and measured against: a checker of every
// hard constraint of DESIGN §1–§3 (Check), an exhaustive search for a full
// placement (Exists), and a naive first-fit placement as a speed and
// packing peer (FirstFit). It reads the manifests itself, written from the
// design rather than from the scheduler's code, and uses only the spec's
// primitives: tenancy.Rules.Required, tenancy.Boundary and topology.Build.
package bruteforce

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// amount is an amount of resources: millicores, bytes, PIDs.
type amount struct{ milliCPU, memory, pids int64 }

func (a amount) plus(b amount) amount {
	return amount{a.milliCPU + b.milliCPU, a.memory + b.memory, a.pids + b.pids}
}

func (a amount) minus(b amount) amount {
	return amount{a.milliCPU - b.milliCPU, a.memory - b.memory, a.pids - b.pids}
}

// exceeds reports whether a is more than capacity c in any resource; a
// capacity of 0 PIDs means unlimited.
func (a amount) exceeds(c amount) bool {
	return a.milliCPU > c.milliCPU || a.memory > c.memory || (c.pids > 0 && a.pids > c.pids)
}

func (a amount) String() string {
	return fmt.Sprintf("cpu %s, memory %s, pids %d",
		resource.NewMilliQuantity(a.milliCPU, resource.DecimalSI), resource.NewQuantity(a.memory, resource.BinarySI), a.pids)
}

func amountOf(r v1.Resources) amount {
	var a amount
	if r.CPU != nil {
		a.milliCPU = r.CPU.MilliValue()
	}
	if r.Memory != nil {
		a.memory = r.Memory.Value()
	}
	a.pids = r.PIDs
	return a
}

func fromTopology(r topology.Resources) amount { return amount{r.MilliCPU, r.Memory, r.PIDs} }

// workload is one workload with defaults applied and references resolved.
type workload struct {
	key       string // TENANT/NAME
	tenant    string
	replicas  int
	request   amount
	floor     tenancy.Tier // the stronger of container, the tenant's and the workload's minimum
	dedicated bool         // the workload's or its tenant's
	spread    []spread     // hard entries only
	affinity  []affinity   // hard entries only
	party     tenancy.Party
	// residency is every limit on where it may go: the tenant's and the
	// workload's own spec.placement, each checked on its own.
	residency []v1.Placement
}

// spread is one hard spread entry.
type spread struct {
	level, name string
	index       int
	min, max    int
}

// affinity is one hard affinity rule and the workloads it selects.
type affinity struct {
	desc    string
	targets map[int]bool
	same    bool
	level   string
	index   int
}

// rep is one placed replica.
type rep struct {
	w, ord int
	node   int
	tier   tenancy.Tier
}

// model is a manifest set, indexed for checking.
type model struct {
	top      *topology.Topology
	rules    *tenancy.Rules
	overhead [tenancy.Host + 1]amount
	wls      []workload
	index    map[string]int // TENANT/NAME → workload
	req      map[[2]int]tenancy.Decision
	ruleErrs map[string]bool
}

// newModel reads set as DESIGN §4 defines it: the default runtimes of
// `rung plan` for nodes that list none, the default tier overheads unless
// a Policy replaces them, and the documented defaults for omitted fields.
func newModel(set *v1.Set, rules *tenancy.Rules) (*model, error) {
	if rules == nil {
		rules = &tenancy.Rules{}
	}
	top, err := topology.Build(set.Topologies, topology.DefaultRuntimes)
	if err != nil {
		return nil, err
	}
	m := &model{top: top, rules: rules, index: map[string]int{}, req: map[[2]int]tenancy.Decision{}, ruleErrs: map[string]bool{}}
	for t := range m.overhead {
		m.overhead[t] = fromTopology(scheduler.DefaultOverhead[t])
	}
	for _, p := range set.Policies {
		for name, r := range p.Spec.TierOverhead {
			t, err := tenancy.ParseTier(name)
			if err != nil {
				return nil, fmt.Errorf("policy %s: %w", p.Metadata.Name, err)
			}
			m.overhead[t] = amountOf(r)
		}
	}
	tenants := map[string]*v1.Tenant{}
	for i := range set.Tenants {
		tenants[set.Tenants[i].Metadata.Name] = &set.Tenants[i]
	}
	for _, w := range set.Workloads {
		m.index[w.Metadata.Tenant+"/"+w.Metadata.Name] = len(m.wls)
		m.wls = append(m.wls, workload{key: w.Metadata.Tenant + "/" + w.Metadata.Name, tenant: w.Metadata.Tenant})
	}
	for i, w := range set.Workloads {
		t, ok := tenants[w.Metadata.Tenant]
		if !ok {
			return nil, fmt.Errorf("workload %s: no tenant %q", m.wls[i].key, w.Metadata.Tenant)
		}
		if err := m.fill(&m.wls[i], &w, t, set); err != nil {
			return nil, fmt.Errorf("workload %s: %w", m.wls[i].key, err)
		}
	}
	return m, nil
}

func (m *model) fill(wl *workload, w *v1.Workload, t *v1.Tenant, set *v1.Set) error {
	org, trust := t.Spec.Organization, string(t.Spec.Trust)
	if org == "" {
		org = t.Metadata.Name
	}
	if trust == "" {
		trust = string(v1.TrustUntrusted)
	}
	class, priv := string(w.Spec.DataClass), string(w.Spec.Privilege)
	if class == "" {
		class = string(v1.DataInternal)
	}
	if priv == "" {
		priv = string(v1.PrivilegeStandard)
	}
	// A workload mounting a restricted Volume handles restricted data.
	for _, m := range w.Spec.Volumes {
		for _, vol := range set.Volumes {
			if vol.Metadata.Tenant == t.Metadata.Name && vol.Metadata.Name == m.Name && vol.Spec.DataClass == v1.DataRestricted {
				class = string(v1.DataRestricted)
			}
		}
	}
	wl.residency = []v1.Placement{t.Spec.Placement, w.Spec.Placement}
	wl.party = tenancy.Party{
		Tenant: t.Metadata.Name, Organization: org, Trust: trust, TenantLabels: t.Metadata.Labels,
		Workload: w.Metadata.Name, WorkloadLabels: w.Metadata.Labels, DataClass: class, Privilege: priv,
	}
	wl.replicas = 1
	if w.Spec.Replicas != nil {
		wl.replicas = *w.Spec.Replicas
	}
	wl.request = amountOf(w.Spec.Resources)
	wl.dedicated = w.Spec.Dedicated || t.Spec.Dedicated
	wl.floor = tenancy.Container
	for _, min := range []v1.Tier{t.Spec.Isolation.Minimum, w.Spec.Isolation.Minimum} {
		f, err := tenancy.ParseTier(min)
		if err != nil {
			return err
		}
		wl.floor = tenancy.Max(wl.floor, f)
	}
	for _, s := range w.Spec.Spread {
		li, ok := m.top.Level(s.Level)
		if !ok {
			return fmt.Errorf("spread: unknown level %q", s.Level)
		}
		if !s.Soft {
			wl.spread = append(wl.spread, spread{level: s.Level, index: li, min: s.MinDomains, max: s.MaxPerDomain})
		}
	}
	for _, a := range w.Spec.Affinity {
		li, ok := m.top.Level(a.Level)
		if !ok {
			return fmt.Errorf("affinity: unknown level %q", a.Level)
		}
		if a.Soft {
			continue
		}
		af := affinity{same: a.Op == "==", level: a.Level, index: li, targets: map[int]bool{}}
		switch {
		case a.Workload != "":
			// A bare name is a workload of the same tenant.
			af.desc = "workload " + a.Workload
			key := a.Workload
			if !strings.Contains(key, "/") {
				key = wl.tenant + "/" + key
			}
			if j, ok := m.index[key]; ok {
				af.targets[j] = true
			}
		case a.Tenant != "":
			af.desc = "tenant " + a.Tenant
			for j, o := range set.Workloads {
				if o.Metadata.Tenant == a.Tenant {
					af.targets[j] = true
				}
			}
		case a.Label != "":
			// A label selects the same tenant's workloads.
			af.desc = "label " + a.Label
			k, v, _ := strings.Cut(a.Label, "=")
			for j, o := range set.Workloads {
				if got, has := o.Metadata.Labels[k]; has && got == v && o.Metadata.Tenant == wl.tenant {
					af.targets[j] = true
				}
			}
		}
		wl.affinity = append(wl.affinity, af)
	}
	return nil
}

// required is required(a→b) for replicas of workloads a and b. A rule that
// fails to evaluate demands host (fail closed) and is remembered.
func (m *model) required(a, b int) tenancy.Decision {
	if d, ok := m.req[[2]int{a, b}]; ok {
		return d
	}
	d, err := m.rules.Required(&m.wls[a].party, &m.wls[b].party)
	if err != nil {
		m.ruleErrs[fmt.Sprintf("required(%s→%s): %v", m.wls[a].key, m.wls[b].key, err)] = true
		d = tenancy.Decision{Tier: tenancy.Host, Rule: "rule error"}
	}
	m.req[[2]int{a, b}] = d
	return d
}

// runs reports whether node n can run tier t: only the tiers its runtimes
// list (DESIGN §1: fail closed). The host tier, too, must be listed:
// handing a whole machine to one tenant is the operator's decision.
func (m *model) runs(n int, t tenancy.Tier) bool {
	return t != tenancy.None && m.top.Nodes[n].Runtimes.Has(t)
}

// offered is the weakest tier ≥ t that node n runs, or None.
func (m *model) offered(n int, t tenancy.Tier) tenancy.Tier {
	for ; t <= tenancy.Host; t++ {
		if m.runs(n, t) {
			return t
		}
	}
	return tenancy.None
}

func (m *model) place(n int) tenancy.Place { return m.top.Place(n) }

func (m *model) name(r rep) string { return fmt.Sprintf("%s[%d]", m.wls[r.w].key, r.ord) }

// need is the weakest tier that satisfies r's floor and the invariant
// towards every other replica in reps on r's physical host.
func (m *model) need(reps []rep, i int) tenancy.Tier {
	r := reps[i]
	need := m.wls[r.w].floor
	host := m.top.Nodes[r.node].Host
	for j, o := range reps {
		if j == i || m.top.Nodes[o.node].Host != host {
			continue
		}
		d := m.required(r.w, o.w)
		if tenancy.Boundary(m.place(r.node), m.place(o.node)) < d.Tier {
			need = tenancy.Max(need, d.Tier)
		}
	}
	return need
}
