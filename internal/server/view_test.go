package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/scheduler"
)

// TestTenantView: a tenant's explanations name no other tenant, none of
// its workloads, and no node or host that only other tenants use; its
// own nodes stay named.
func TestTenantView(t *testing.T) {
	res := &scheduler.Result{
		Placements: []scheduler.Placement{
			{Workload: "biology/seq", Replica: 0, Node: "n1", Host: "h1", Reason: "rule 4 vs geology/rocks"},
			{Workload: "geology/rocks", Replica: 0, Node: "n3", Host: "h3", Reason: "rule 4 vs biology/seq"},
			{Workload: "geology/rocks", Replica: 1, Node: "n1", Host: "h1", Reason: "host"},
		},
		Unplaced: []scheduler.Unplaced{{Workload: "biology/big", Reasons: []string{
			"tenancy: removed 2 of 3 nodes (e.g. tenancy: host h3 runs geology/rocks[0] at tier host)",
			"dedicated: host h3 runs tenant geology",
			"tenancy: needs tier host (rule 3 vs geology/rocks[1]) but host h1 runs other tenants",
			"smallest change: free cpu 2 more on node n3 (or add a node like it)",
			"resources: needs cpu 4, free cpu 1 on node n1",
		}}, {Workload: "geology/other", Reasons: []string{"secret"}}},
	}
	got := tenantView(res, "biology", []string{"biology", "geology"})
	want := &scheduler.Result{
		Placements: []scheduler.Placement{
			{Workload: "biology/seq", Replica: 0, Node: "n1", Host: "h1", Reason: "rule 4 vs another tenant's replica"},
		},
		Unplaced: []scheduler.Unplaced{{Workload: "biology/big", Reasons: []string{
			"tenancy: removed 2 of 3 nodes (e.g. tenancy: a host runs another tenant's replica at tier host)",
			"dedicated: a host runs another tenant",
			"tenancy: needs tier host (rule 3 vs another tenant's replica) but host h1 runs other tenants",
			"smallest change: free cpu 2 more on a node (or add a node like it)",
			"resources: needs cpu 4, free cpu 1 on node n1",
		}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("biology's view (-want +got):\n%s", d)
	}
	// The operator's result is untouched.
	if res.Unplaced[0].Reasons[1] != "dedicated: host h3 runs tenant geology" {
		t.Errorf("tenantView changed its input: %q", res.Unplaced[0].Reasons[1])
	}
}
