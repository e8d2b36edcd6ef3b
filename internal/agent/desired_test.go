package agent

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

func TestFromPlan(t *testing.T) {
	set, err := v1.Load(filepath.Join("..", "..", "examples", "university"))
	if err != nil {
		t.Fatal(err)
	}
	_, res, err := scheduler.PlanSet(set, topology.DefaultRuntimes, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := FromPlan(set, res, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(res.Placements) {
		t.Fatalf("all nodes: %d specs for %d placements", len(all), len(res.Placements))
	}
	var onH3 []string
	specs, err := FromPlan(set, res, "h3")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		onH3 = append(onH3, s.ID)
	}
	var want []string
	for _, pl := range res.Placements {
		if pl.Node == "h3" {
			want = append(want, ReplicaID(pl.Workload, pl.Replica))
		}
	}
	if diff := cmp.Diff(want, onH3); diff != "" || len(want) == 0 {
		t.Errorf("h3 replicas (-want +got):\n%s", diff)
	}
	s := all[0]
	if s.ID != "biology-notebook-0" || s.Tenant != "biology" || s.Tier != tenancy.Container || s.Image != "busybox:latest" ||
		s.Resources.MilliCPU != 500 || s.Resources.Memory != 1<<30 || s.Resources.PIDs != 64 {
		t.Errorf("first spec = %+v", s)
	}
}
