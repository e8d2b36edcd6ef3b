package bruteforce_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// TestNetworkTiers: on the nodes of a Topology with a tenant network, the
// planner offers only the tiers the node can attach a network to; a
// replica that needs another stays unplaced with the reason and the fix
// (never moved to a weaker tier), and the brute-force checker agrees.
func TestNetworkTiers(t *testing.T) {
	withNet := func(s *v1.Set) { s.Topologies[0].Spec.Network = &v1.TopologyNetwork{Pool: "10.88.0.0/16"} }
	onlyH1 := func(s *v1.Set) { s.Topologies[0].Spec.Nodes = s.Topologies[0].Spec.Nodes[:2] }
	tests := []struct {
		name string
		edit func(*v1.Set)
		// report is what the nodes' agents say they attach networks to
		// (nil: none reported, the default).
		report   map[string]tenancy.Set
		tiers    map[string]string // placed replica → tier
		unplaced map[string]string // unplaced replica → part of its reason
	}{
		{
			name:  "no network: sandboxes on h1",
			edit:  onlyH1,
			tiers: map[string]string{"a/web[0]": "sandbox", "a/web[1]": "sandbox", "b/db[0]": "container", "c/job[0]": "sandbox"},
		},
		{
			name:     "network: the sandboxes can't join it",
			edit:     func(s *v1.Set) { onlyH1(s); withNet(s) },
			tiers:    map[string]string{"a/web[0]": "container", "a/web[1]": "container", "c/job[0]": "container"},
			unplaced: map[string]string{"b/db[0]": "sandbox and vm tiers can't join a tenant network on node h1: it attaches networks to [container host] only; fix:"},
		},
		{
			name:   "network: the agents attach sandboxes too",
			edit:   func(s *v1.Set) { onlyH1(s); withNet(s) },
			report: map[string]tenancy.Set{"h1": topology.DefaultNetworkTiers.With(tenancy.Sandbox), "h1-vm": topology.DefaultNetworkTiers.With(tenancy.Sandbox)},
			tiers:  map[string]string{"a/web[0]": "sandbox", "a/web[1]": "sandbox", "b/db[0]": "container", "c/job[0]": "sandbox"},
		},
		{
			name:  "network: other organizations on hosts of their own",
			edit:  withNet,
			tiers: map[string]string{"a/web[0]": "container", "a/web[1]": "container", "b/db[0]": "container", "c/job[0]": "container"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := base()
			for i := range set.Tenants {
				set.Tenants[i].Spec.Trust = v1.TrustTrusted // rule 5: b needs a sandbox next to a and c
			}
			tt.edit(set)
			rules := compile(t, set)
			prob, err := scheduler.NewProblem(set, rules, topology.DefaultRuntimes)
			if err != nil {
				t.Fatal(err)
			}
			if tt.report != nil {
				prob.Topology.Networks(func(n string) (tenancy.Set, bool) { s, ok := tt.report[n]; return s, ok })
			}
			res, err := scheduler.Plan(prob, scheduler.Options{})
			if err != nil {
				t.Fatal(err)
			}
			tiers := map[string]string{}
			for _, p := range res.Placements {
				tiers[p.Workload+"["+strconv.Itoa(p.Replica)+"]"] = p.Tier
			}
			if diff := cmp.Diff(tt.tiers, tiers); diff != "" {
				t.Errorf("placed tiers (-want +got):\n%s", diff)
			}
			got := map[string]string{}
			for _, u := range res.Unplaced {
				key := u.Workload + "[" + strconv.Itoa(u.Replica) + "]"
				got[key] = strings.Join(u.Reasons, "; ")
				if want, ok := tt.unplaced[key]; ok && strings.Contains(got[key], want) {
					got[key] = want
				}
			}
			if diff := cmp.Diff(tt.unplaced, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unplaced (-want +got):\n%s", diff)
			}
			if tt.report != nil {
				return // the checker sees the manifests, not the agents' reports
			}
			if bad := bruteforce.Check(set, rules, res); len(bad) > 0 {
				t.Errorf("checker: %v", bad)
			}
			// The checker agrees that no complete plan exists when a
			// replica is left unplaced, and that one does otherwise.
			found, complete := bruteforce.Exists(set, rules, 1_000_000)
			if !complete || found != (len(res.Unplaced) == 0) {
				t.Errorf("Exists = %v (complete %v), planner left %d unplaced", found, complete, len(res.Unplaced))
			}
		})
	}
}
