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

// TestFromPlanImages: a replica carries its tenant's image policy, a copy,
// only when the tenant sets registries or signedBy.
func TestFromPlanImages(t *testing.T) {
	const pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"
	for _, c := range []struct {
		name   string
		images v1.ImagePolicy
		want   *v1.ImagePolicy
	}{
		{"none", v1.ImagePolicy{}, nil},
		// The node applies the threshold to the image checks (it used to be
		// dropped, and the node blocked at the default).
		{"severity only", v1.ImagePolicy{BlockSeverity: "critical"}, &v1.ImagePolicy{BlockSeverity: "critical"}},
		{"registries", v1.ImagePolicy{Registries: []string{"registry.campus.example/"}},
			&v1.ImagePolicy{Registries: []string{"registry.campus.example/"}}},
		{"signedBy", v1.ImagePolicy{SignedBy: []string{pem}, BlockSeverity: "low"},
			&v1.ImagePolicy{SignedBy: []string{pem}, BlockSeverity: "low"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := &v1.Set{
				Tenants: []v1.Tenant{
					{Metadata: v1.ObjectMeta{Name: "biology"}, Spec: v1.TenantSpec{Images: c.images}},
					{Metadata: v1.ObjectMeta{Name: "geology"}, Spec: v1.TenantSpec{Images: v1.ImagePolicy{SignedBy: []string{"other"}}}},
				},
				Workloads: []v1.Workload{{Metadata: v1.ObjectMeta{Name: "seq", Tenant: "biology"}, Spec: v1.WorkloadSpec{Image: "registry.campus.example/seq:1"}}},
			}
			res := &scheduler.Result{Placements: []scheduler.Placement{{Workload: "biology/seq", Tier: "container", Node: "h1"}}}
			specs, err := FromPlan(set, res, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 {
				t.Fatalf("%d specs", len(specs))
			}
			if diff := cmp.Diff(c.want, specs[0].Images); diff != "" {
				t.Errorf("images (-want +got):\n%s", diff)
			}
			if c.want != nil {
				for _, l := range [][]string{specs[0].Images.SignedBy, specs[0].Images.Registries} {
					for i := range l {
						l[i] = "changed"
					}
				}
				if diff := cmp.Diff(c.images, set.Tenants[0].Spec.Images); diff != "" {
					t.Errorf("the set changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}
