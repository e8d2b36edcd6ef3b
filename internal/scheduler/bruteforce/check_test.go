package bruteforce_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/scheduler/gen"
	"rung.dev/rung/internal/tenancy"
)

func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// base is the set most cases modify: hosts h1 (with VM node h1-vm) and h2
// in dc1, h3 in dc2 (which runs the host tier); tenants a and b of
// different organizations, c of a's; workloads a/web (2 replicas), b/db
// and c/job.
func base() *v1.Set {
	all := []v1.Tier{v1.TierContainer, v1.TierSandbox, v1.TierVM}
	return &v1.Set{
		Topologies: []v1.Topology{gen.Topology(
			gen.Node("h1", "", map[string]string{"datacenter": "dc1", "rack": "r1"}, all...),
			gen.Node("h1-vm", "h1", nil, all...),
			gen.Node("h2", "", map[string]string{"datacenter": "dc1", "rack": "r2"}, all...),
			gen.Node("h3", "", map[string]string{"datacenter": "dc2"}, v1.TierContainer, v1.TierHost),
		)},
		Tenants:   []v1.Tenant{gen.Tenant("a", "x"), gen.Tenant("b", "y"), gen.Tenant("c", "x")},
		Workloads: []v1.Workload{gen.Workload("a", "web", 2, "1"), gen.Workload("b", "db", 1, "1"), gen.Workload("c", "job", 1, "1")},
	}
}

func pl(key string, replica int, tier v1.Tier, node, host string) scheduler.Placement {
	return scheduler.Placement{Workload: key, Replica: replica, Tier: string(tier), Node: node, Host: host}
}

// valid is a valid plan of base().
func valid() []scheduler.Placement {
	return []scheduler.Placement{
		pl("a/web", 0, v1.TierContainer, "h1", "h1"),
		pl("a/web", 1, v1.TierContainer, "h2", "h2"),
		pl("b/db", 0, v1.TierContainer, "h3", "h3"),
		pl("c/job", 0, v1.TierContainer, "h1", "h1"),
	}
}

// with returns valid() with placement i replaced by p.
func with(i int, p scheduler.Placement) []scheduler.Placement {
	ps := valid()
	ps[i] = p
	return ps
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*v1.Set)
		place    []scheduler.Placement
		unplaced []scheduler.Unplaced
		down     []bruteforce.Domain
		want     []string
	}{
		{name: "valid", place: valid()},
		{
			name:  "missing replica",
			place: valid()[:3],
			want:  []string{"c/job[0]: neither placed nor unplaced"},
		},
		{
			name:     "reported unplaced",
			place:    valid()[:3],
			unplaced: []scheduler.Unplaced{{Workload: "c/job", Replica: 0}},
		},
		{
			name:     "placed and unplaced",
			place:    valid(),
			unplaced: []scheduler.Unplaced{{Workload: "c/job", Replica: 0}},
			want:     []string{"unplaced c/job[0]: already listed as placed"},
		},
		{
			name:  "duplicate, unknown workload, node, tier, replica, wrong host",
			place: append(valid(), pl("a/web", 1, v1.TierContainer, "h1", "h1"), pl("a/nope", 0, v1.TierContainer, "h1", "h1"), pl("c/job", 1, v1.TierContainer, "h1", "h1")),
			edit: func(s *v1.Set) {
				s.Workloads = append(s.Workloads, gen.Workload("c", "x", 3, "1"), gen.Workload("c", "y", 1, "1"), gen.Workload("c", "z", 1, "1"))
			},
			unplaced: []scheduler.Unplaced{{Workload: "c/y", Replica: 0}},
			want: []string{
				"placed a/web[1]: already listed as placed",
				"placed a/nope[0]: no such workload",
				"placed c/job[1]: the workload has 1 replicas",
				"c/x[0]: neither placed nor unplaced",
				"c/x[1]: neither placed nor unplaced",
				"c/x[2]: neither placed nor unplaced",
				"c/z[0]: neither placed nor unplaced",
			},
		},
		{
			name:  "bad node, host and tier",
			place: append(with(3, pl("c/job", 0, v1.TierContainer, "h9", "h9")), pl("c/x", 0, "none", "h1", "h1"), pl("c/y", 0, v1.TierContainer, "h1-vm", "h1-vm")),
			edit: func(s *v1.Set) {
				s.Workloads = append(s.Workloads, gen.Workload("c", "x", 1, "1"), gen.Workload("c", "y", 1, "1"))
			},
			want: []string{
				"c/job[0]: no node h9",
				`c/x[0]: tier "none" is not a tier`,
				`c/y[0]: host "h1-vm", but node h1-vm is on host h1`,
			},
		},
		{
			name:  "down",
			place: valid(),
			down:  []bruteforce.Domain{{Level: "rack", Name: "r1"}},
			want:  []string{"a/web[0]: node h1 is down", "c/job[0]: node h1 is down"},
		},
		{
			name:  "down host takes its VM nodes",
			place: with(3, pl("c/job", 0, v1.TierContainer, "h1-vm", "h1")),
			down:  []bruteforce.Domain{{Level: "host", Name: "h1"}},
			want:  []string{"a/web[0]: node h1 is down", "c/job[0]: node h1-vm is down"},
		},
		{
			name:  "unknown down domain",
			place: valid(),
			down:  []bruteforce.Domain{{Level: "rack", Name: "r9"}},
			want:  []string{"down rack=r9: unknown rack (known: [r1 r2])"},
		},
		{
			name:  "runtime",
			edit:  func(s *v1.Set) { s.Topologies[0].Spec.Nodes[3].Runtimes = []v1.Tier{v1.TierContainer} },
			place: with(2, pl("b/db", 0, v1.TierHost, "h3", "h3")),
			want:  []string{"b/db[0]: node h3 does not run tier host (runs [container])"},
		},
		{
			name:  "default runtimes",
			edit:  func(s *v1.Set) { s.Topologies[0].Spec.Nodes[2].Runtimes = nil },
			place: with(1, pl("a/web", 1, v1.TierVM, "h2", "h2")),
			want:  []string{"a/web[1]: node h2 does not run tier vm (runs [container sandbox])"},
		},
		{
			name:  "tenant floor",
			edit:  func(s *v1.Set) { s.Tenants[0].Spec.Isolation.Minimum = v1.TierSandbox },
			place: with(1, pl("a/web", 1, v1.TierSandbox, "h2", "h2")),
			want:  []string{"a/web[0]: tier container is below its floor sandbox"},
		},
		{
			name:  "workload floor",
			edit:  func(s *v1.Set) { s.Workloads[1].Spec.Isolation.Minimum = v1.TierHost },
			place: valid(),
			want:  []string{"b/db[0]: tier container is below its floor host"},
		},
		{
			name:  "capacity with tier overhead",
			edit:  func(s *v1.Set) { s.Workloads[0].Spec.Resources.CPU = qty("3") },
			place: with(1, pl("a/web", 1, v1.TierSandbox, "h1", "h1")),
			want:  []string{"node h1: cpu 7, memory 3136Mi, pids 0 allocated, capacity cpu 4, memory 8Gi, pids 0"},
		},
		{
			name: "policy overhead",
			edit: func(s *v1.Set) {
				s.Policies = []v1.Policy{{Spec: v1.PolicySpec{TierOverhead: map[v1.Tier]v1.Resources{v1.TierSandbox: {CPU: qty("2500m"), Memory: qty("0")}}}}}
			},
			place: with(3, pl("c/job", 0, v1.TierSandbox, "h1", "h1")),
			want:  []string{"node h1: cpu 4500m, memory 2Gi, pids 0 allocated, capacity cpu 4, memory 8Gi, pids 0"},
		},
		{
			name: "pids",
			edit: func(s *v1.Set) {
				s.Topologies[0].Spec.Nodes[0].Capacity.PIDs = 100
				s.Workloads[0].Spec.Resources.PIDs = 60
				s.Workloads[2].Spec.Resources.PIDs = 60
			},
			place: valid(),
			want:  []string{"node h1: cpu 2, memory 2Gi, pids 120 allocated, capacity cpu 4, memory 8Gi, pids 100"},
		},
		{
			name:  "tenancy: rule 6 both ways on one kernel",
			place: with(2, pl("b/db", 0, v1.TierContainer, "h2", "h2")),
			want: []string{
				"a/web[1] → b/db[0] on host h2: effective container < required vm (rule 6 (other organization))",
				"b/db[0] → a/web[1] on host h2: effective container < required vm (rule 6 (other organization))",
			},
		},
		{
			name:  "tenancy: a VM node is vm apart, the host's kernel is not",
			edit:  func(s *v1.Set) { s.Workloads[2].Spec.Privilege = v1.PrivilegeElevated },
			place: with(1, pl("a/web", 1, v1.TierContainer, "h1-vm", "h1")),
			want: []string{
				"a/web[0] → c/job[0] on host h1: effective container < required vm (rule 2 (different class or privilege))",
				"c/job[0] → a/web[0] on host h1: effective container < required vm (rule 2 (different class or privilege))",
				"c/job[0] → a/web[1] on host h1: effective container < required vm (rule 2 (different class or privilege))",
			},
		},
		{
			name: "tenancy: operator rule",
			edit: func(s *v1.Set) {
				s.Policies = []v1.Policy{{Spec: v1.PolicySpec{Rules: []v1.Rule{{Name: "x", When: `attacker.tenant.name == "c"`, Require: v1.TierSandbox}}}}}
			},
			place: valid(),
			want:  []string{"c/job[0] → a/web[0] on host h1: effective container < required sandbox (policy x)"},
		},
		{
			name:  "dedicated tenant",
			edit:  func(s *v1.Set) { s.Tenants[2].Spec.Dedicated = true },
			place: valid(),
			want:  []string{"c/job[0] is dedicated but shares host h1 with a/web[0]"},
		},
		{
			name:  "dedicated workload",
			edit:  func(s *v1.Set) { s.Workloads[0].Spec.Dedicated = true },
			place: valid(),
			want:  []string{"a/web[0] is dedicated but shares host h1 with c/job[0]"},
		},
		{
			name:  "host tier alone",
			edit:  func(s *v1.Set) { s.Workloads[1].Spec.Isolation.Minimum = v1.TierHost },
			place: with(2, pl("b/db", 0, v1.TierHost, "h3", "h3")),
		},
		{
			name: "host tier shares",
			place: []scheduler.Placement{
				pl("a/web", 0, v1.TierContainer, "h1", "h1"),
				pl("a/web", 1, v1.TierHost, "h3", "h3"),
				pl("b/db", 0, v1.TierHost, "h3", "h3"),
				pl("c/job", 0, v1.TierContainer, "h1", "h1"),
			},
			want: []string{"a/web[1] has tier host but shares host h3 with b/db[0]", "b/db[0] has tier host but shares host h3 with a/web[1]"},
		},
		{
			name:  "VM node reserved for a tenant",
			edit:  func(s *v1.Set) { s.Topologies[0].Spec.Nodes[1].Tenant = "a" },
			place: with(3, pl("c/job", 0, v1.TierContainer, "h1-vm", "h1")),
			want:  []string{"c/job[0]: node h1-vm is reserved for tenant a"},
		},
		{
			name:  "spread maxPerDomain",
			edit:  func(s *v1.Set) { s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MaxPerDomain: 1}} },
			place: valid(),
			want:  []string{"a/web: spread datacenter: 2 replicas in dc1, maxPerDomain 1"},
		},
		{
			name: "soft spread is not a constraint",
			edit: func(s *v1.Set) {
				s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MaxPerDomain: 1, Soft: true}}
			},
			place: valid(),
		},
		{
			name:  "spread minDomains",
			edit:  func(s *v1.Set) { s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MinDomains: 2}} },
			place: valid(),
			want:  []string{"a/web: spread datacenter: 1 domains, minDomains 2"},
		},
		{
			name:     "spread minDomains waits for every replica",
			edit:     func(s *v1.Set) { s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MinDomains: 2}} },
			place:    append(valid()[:1], valid()[2:]...),
			unplaced: []scheduler.Unplaced{{Workload: "a/web", Replica: 1}},
		},
		{
			name:  "spread on a node without the level",
			edit:  func(s *v1.Set) { s.Workloads[1].Spec.Spread = []v1.Spread{{Level: "rack", MaxPerDomain: 1}} },
			place: valid(),
			want:  []string{"b/db[0]: spread rack: node h3 has no rack domain"},
		},
		{
			name: "affinity != workload",
			edit: func(s *v1.Set) {
				s.Workloads[2].Spec.Affinity = []v1.Affinity{{Workload: "a/web", Op: "!=", Level: "datacenter"}}
			},
			place: valid(),
			want:  []string{`c/job[0]: affinity workload a/web != datacenter: 2 of its replicas in datacenter "dc1"`},
		},
		{
			name: "affinity bare name is the same tenant's",
			edit: func(s *v1.Set) {
				s.Workloads[2].Spec.Affinity = []v1.Affinity{{Workload: "web", Op: "!=", Level: "datacenter"}}
			},
			place: valid(),
		},
		{
			name: "affinity != self is anti-affinity",
			edit: func(s *v1.Set) {
				s.Workloads[0].Spec.Affinity = []v1.Affinity{{Workload: "web", Op: "!=", Level: "datacenter"}}
			},
			place: valid(),
			want: []string{
				`a/web[0]: affinity workload web != datacenter: 1 of its replicas in datacenter "dc1"`,
				`a/web[1]: affinity workload web != datacenter: 1 of its replicas in datacenter "dc1"`,
			},
		},
		{
			name: "affinity == tenant",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Tenant: "c", Op: "==", Level: "datacenter"}}
			},
			place: valid(),
			want:  []string{`b/db[0]: affinity tenant c == datacenter: none of its 1 placed replicas in datacenter "dc2"`},
		},
		{
			name: "affinity == with no target placed is met",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Tenant: "c", Op: "==", Level: "datacenter"}}
			},
			place:    valid()[:3],
			unplaced: []scheduler.Unplaced{{Workload: "c/job", Replica: 0}},
		},
		{
			name: "affinity soft is not a constraint",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Tenant: "c", Op: "==", Level: "datacenter", Soft: true}}
			},
			place: valid(),
		},
		{
			name: "affinity label selects the same tenant's workloads",
			edit: func(s *v1.Set) {
				s.Workloads[0].Metadata.Labels = map[string]string{"app": "x"} // tenant a
				s.Workloads[2].Metadata.Labels = map[string]string{"app": "x"} // tenant c
				s.Workloads = append(s.Workloads, gen.Workload("c", "near", 1, "1"))
				s.Workloads[3].Spec.Affinity = []v1.Affinity{{Label: "app=x", Op: "!=", Level: "host"}}
			},
			place: append(valid(), pl("c/near", 0, v1.TierContainer, "h1", "h1")),
			want:  []string{`c/near[0]: affinity label app=x != host: 1 of its replicas in host "h1"`},
		},
		{
			name: "affinity on a node without the level",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Tenant: "a", Op: "==", Level: "rack"}, {Tenant: "a", Op: "!=", Level: "rack"}}
			},
			place: valid(),
			want:  []string{`b/db[0]: affinity tenant a == rack: none of its 2 placed replicas in rack ""`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := base()
			if tt.edit != nil {
				tt.edit(set)
			}
			rules := compile(t, set)
			res := &scheduler.Result{Placements: tt.place, Unplaced: tt.unplaced}
			got := bruteforce.Check(set, rules, res, tt.down...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
		})
	}
}

// compile compiles the operator rules of set's policies.
func compile(t *testing.T, set *v1.Set) *tenancy.Rules {
	t.Helper()
	rules, err := gen.Rules(set)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}
