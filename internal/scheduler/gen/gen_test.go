package gen_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/scheduler/gen"
)

// TestValid checks that generated sets pass manifest validation, so the
// property tests exercise the scheduler and not its input checks.
func TestValid(t *testing.T) {
	tests := []struct {
		name  string
		seeds int
		size  gen.Size
	}{
		{"small", 500, gen.Small()},
		{"tiny", 500, gen.Tiny()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range int64(tt.seeds) {
				set := gen.Random(seed, tt.size)
				if err := set.Validate(); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
		})
	}
	t.Run("cluster", func(t *testing.T) {
		set := gen.Cluster(500, 10_000, 50, 1)
		if err := set.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		for _, data := range []string{"", "\x00", "\xff\xff\xff\xff", "some fuzz input of moderate length"} {
			if err := gen.FromBytes([]byte(data), gen.Small()).Validate(); err != nil {
				t.Fatalf("%q: %v", data, err)
			}
		}
	})
}

// TestDeterministic checks that a seed always gives the same set.
func TestDeterministic(t *testing.T) {
	for seed := range int64(50) {
		if diff := cmp.Diff(gen.Random(seed, gen.Small()), gen.Random(seed, gen.Small())); diff != "" {
			t.Fatalf("seed %d: two sets differ:\n%s", seed, diff)
		}
	}
	if diff := cmp.Diff(gen.Cluster(200, 1000, 10, 3), gen.Cluster(200, 1000, 10, 3)); diff != "" {
		t.Fatalf("cluster: two sets differ:\n%s", diff)
	}
}

// TestClusterShape checks the benchmark problem's sizes.
func TestClusterShape(t *testing.T) {
	tests := []struct{ nodes, replicas, tenants int }{
		{500, 10_000, 50},
		{5000, 10_000, 50},
		{100, 7, 3},
	}
	for _, tt := range tests {
		set := gen.Cluster(tt.nodes, tt.replicas, tt.tenants, 1)
		replicas, used := 0, map[string]bool{}
		for _, w := range set.Workloads {
			replicas += *w.Spec.Replicas
			used[w.Metadata.Tenant] = true
			if n := *w.Spec.Replicas; n < 2 || n > 11 {
				t.Errorf("%s: %d replicas, want 2–11", w.Metadata.Name, n)
			}
		}
		got := []int{len(set.Topologies[0].Spec.Nodes), replicas, len(set.Tenants)}
		if diff := cmp.Diff([]int{tt.nodes, tt.replicas, tt.tenants}, got); diff != "" {
			t.Errorf("Cluster(%d, %d, %d): nodes, replicas, tenants (-want +got):\n%s", tt.nodes, tt.replicas, tt.tenants, diff)
		}
	}
}
