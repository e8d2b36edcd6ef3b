package bruteforce_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/scheduler/gen"
	"rung.dev/rung/internal/topology"
)

func plan(set *v1.Set) (*scheduler.Result, error) {
	_, res, err := scheduler.PlanSet(set, topology.DefaultRuntimes, scheduler.Options{})
	return res, err
}

func TestExists(t *testing.T) {
	containerOnly := func(s *v1.Set) {
		for i := range s.Topologies[0].Spec.Nodes {
			s.Topologies[0].Spec.Nodes[i].Runtimes = []v1.Tier{v1.TierContainer}
		}
	}
	onlyH1 := func(s *v1.Set) { s.Topologies[0].Spec.Nodes = s.Topologies[0].Spec.Nodes[:2] }
	tests := []struct {
		name            string
		edit            func(*v1.Set)
		limit           int
		found, complete bool
	}{
		{name: "base", found: true, complete: true},
		{name: "too big for any node", edit: func(s *v1.Set) { s.Workloads[0].Spec.Resources.CPU = qty("5") }, complete: true},
		{name: "stopped at the limit", limit: 1},
		{
			name: "other organizations on one host need vm",
			edit: func(s *v1.Set) { onlyH1(s); containerOnly(s) }, complete: true,
		},
		{name: "on one host with vm", edit: onlyH1, found: true, complete: true},
		{name: "minDomains beyond the datacenters", edit: func(s *v1.Set) { s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MinDomains: 3}} }, complete: true},
		{name: "minDomains met", edit: func(s *v1.Set) { s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "datacenter", MinDomains: 2}} }, found: true, complete: true},
		{
			name: "maxPerDomain and capacity",
			edit: func(s *v1.Set) {
				s.Workloads[0].Spec.Spread = []v1.Spread{{Level: "host", MaxPerDomain: 1}}
				*s.Workloads[0].Spec.Replicas = 4
			},
			found: false, complete: true,
		},
		{
			name: "== across organizations with vm",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Workload: "c/job", Op: "==", Level: "host"}}
				s.Topologies[0].Spec.Nodes = append(s.Topologies[0].Spec.Nodes[:2], s.Topologies[0].Spec.Nodes[3])
			},
			found: true, complete: true,
		},
		{
			name: "== across organizations without vm",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Affinity = []v1.Affinity{{Workload: "c/job", Op: "==", Level: "host"}}
				containerOnly(s)
			},
			complete: true,
		},
		{
			name:  "one host tier node for one tenant",
			edit:  func(s *v1.Set) { s.Workloads[1].Spec.Isolation.Minimum = v1.TierHost },
			found: true, complete: true,
		},
		{
			name: "one host tier node for two tenants",
			edit: func(s *v1.Set) {
				s.Workloads[1].Spec.Isolation.Minimum = v1.TierHost
				s.Workloads[2].Spec.Isolation.Minimum = v1.TierHost
			},
			complete: true,
		},
		{
			name:  "dedicated tenant needs a host of its own",
			edit:  func(s *v1.Set) { onlyH1(s); s.Tenants[0].Spec.Dedicated = true },
			found: false, complete: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := base()
			if tt.edit != nil {
				tt.edit(set)
			}
			limit := tt.limit
			if limit == 0 {
				limit = 1_000_000
			}
			found, complete := bruteforce.Exists(set, compile(t, set), limit)
			if diff := cmp.Diff([]bool{tt.found, tt.complete}, []bool{found, complete}); diff != "" {
				t.Errorf("Exists: found, complete (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExcess(t *testing.T) {
	tests := []struct {
		name  string
		place []scheduler.Placement
		want  []string
	}{
		{name: "exactly enough", place: valid()},
		{
			name: "vm where a neighbour needs it",
			place: []scheduler.Placement{
				pl("a/web", 0, v1.TierContainer, "h1", "h1"),
				pl("a/web", 1, v1.TierVM, "h2", "h2"), // rule 6 both ways
				pl("b/db", 0, v1.TierVM, "h2", "h2"),
				pl("c/job", 0, v1.TierContainer, "h1", "h1"),
			},
		},
		{
			name:  "sandbox for nothing",
			place: with(3, pl("c/job", 0, v1.TierSandbox, "h1", "h1")),
			want:  []string{"c/job[0] on h1: tier sandbox, container would do"},
		},
		{
			name:  "host where the node runs it",
			place: with(2, pl("b/db", 0, v1.TierHost, "h3", "h3")),
			want:  []string{"b/db[0] on h3: tier host, container would do"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := base()
			got := bruteforce.Excess(set, nil, &scheduler.Result{Placements: tt.place})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Excess (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirstFit(t *testing.T) {
	set := base()
	set.Workloads[0].Spec.Spread = []v1.Spread{{Level: "host", MaxPerDomain: 1}}
	res, err := bruteforce.FirstFit(set)
	if err != nil {
		t.Fatal(err)
	}
	want := &scheduler.Result{
		Placements: []scheduler.Placement{
			pl("a/web", 0, v1.TierContainer, "h1", "h1"),
			pl("a/web", 1, v1.TierContainer, "h2", "h2"), // h1-vm is on host h1
			pl("b/db", 0, v1.TierContainer, "h1", "h1"),
			pl("c/job", 0, v1.TierContainer, "h1", "h1"),
		},
		Unplaced: []scheduler.Unplaced{},
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("FirstFit (-want +got):\n%s", diff)
	}
}

// TestTenancyBound: a dedicated tenant's spread forces hosts of its own
// that the resource bound does not see.
func TestTenancyBound(t *testing.T) {
	set := gen.Cluster(500, 2000, 50, 3)
	res, err := plan(set)
	if err != nil {
		t.Fatal(err)
	}
	q, err := bruteforce.Measure(set, res)
	if err != nil {
		t.Fatal(err)
	}
	if q.TenancyBound <= q.LowerBound || q.TenancyBound > q.HostsUsed {
		t.Errorf("bounds: resource %d, tenancy %d, used %d; want resource < tenancy <= used", q.LowerBound, q.TenancyBound, q.HostsUsed)
	}
}

func TestMeasure(t *testing.T) {
	tests := []struct {
		name  string
		place []scheduler.Placement
		want  bruteforce.Quality
		above float64
	}{
		{name: "three hosts for one host's worth", place: valid(), want: bruteforce.Quality{Placed: 4, HostsUsed: 3, LowerBound: 1, TenancyBound: 1}, above: 200},
		{
			name: "overhead counts",
			place: []scheduler.Placement{
				pl("a/web", 0, v1.TierVM, "h1", "h1"),
				pl("a/web", 1, v1.TierVM, "h1-vm", "h1"),
				pl("b/db", 0, v1.TierVM, "h1", "h1"),
				pl("c/job", 0, v1.TierVM, "h1", "h1"),
			},
			// cpu: 4 × (1 + 0.1) = 4.4 cores on 4-core hosts.
			want: bruteforce.Quality{Placed: 4, HostsUsed: 1, LowerBound: 2, TenancyBound: 2}, above: -50,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bruteforce.Measure(base(), &scheduler.Result{Placements: tt.place})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Measure (-want +got):\n%s", diff)
			}
			if got.TenancyBound < got.LowerBound {
				t.Errorf("tenancy bound %d below the resource bound %d", got.TenancyBound, got.LowerBound)
			}
			if got.AbovePct() != tt.above {
				t.Errorf("AbovePct = %v, want %v", got.AbovePct(), tt.above)
			}
		})
	}
}
