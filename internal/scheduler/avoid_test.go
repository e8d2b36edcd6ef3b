package scheduler_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/scheduler"
)

// TestAvoid: a replica moved off a node (a noisy neighbour) is placed on
// another one; without Avoid it goes where the plan puts it first, and
// with every node avoided it is unplaced rather than put back.
func TestAvoid(t *testing.T) {
	m := topo(node("n1", "", ""), node("n2", "", "")) + tenant("acme", "") + workload("acme", "hog", "  replicas: 2\n")
	plan := func(avoid ...scheduler.Avoid) []string {
		t.Helper()
		p := problem(t, m)
		p.Avoid = avoid
		res, err := scheduler.Plan(p, scheduler.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return summary(res)
	}
	base := plan()
	if diff := cmp.Diff([]string{"acme/hog[0] container n1", "acme/hog[1] container n1"}, base); diff != "" {
		t.Fatalf("without avoid (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"acme/hog[0] container n1", "acme/hog[1] container n2"}, plan(scheduler.Avoid{Workload: 0, Replica: 1, Node: 0})); diff != "" {
		t.Errorf("hog[1] avoiding n1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"acme/hog[0] container n1"}, plan(scheduler.Avoid{Workload: 0, Replica: 1, Node: 0}, scheduler.Avoid{Workload: 0, Replica: 1, Node: 1})); diff != "" {
		t.Errorf("hog[1] avoiding both (-want +got):\n%s", diff)
	}
}
