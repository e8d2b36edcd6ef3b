package examples_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/topology"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata/")

// plan runs `rung plan` logic on an example directory.
func plan(t *testing.T, dir string) (*scheduler.Problem, *scheduler.Result) {
	t.Helper()
	set, err := v1.Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	p, res, err := scheduler.PlanSet(set, topology.DefaultRuntimes, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Unplaced) > 0 {
		t.Fatalf("%s: unplaced %+v", dir, res.Unplaced)
	}
	return p, res
}

// TestGolden pins each example's full plan, the one its README shows.
func TestGolden(t *testing.T) {
	for _, name := range []string{"university", "public-cloud", "four-questions"} {
		t.Run(name, func(t *testing.T) {
			_, res := plan(t, name)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".json")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("plan differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestUniversityIsAllContainers(t *testing.T) {
	_, res := plan(t, "university")
	if len(res.Placements) != 7 {
		t.Errorf("placed %d replicas, want 7", len(res.Placements))
	}
	for _, p := range res.Placements {
		if p.Tier != "container" {
			t.Errorf("%s[%d] tier %s, want container", p.Workload, p.Replica, p.Tier)
		}
	}
}

func TestPublicCloud(t *testing.T) {
	p, res := plan(t, "public-cloud")
	org := map[string]string{}
	for i := range p.Workloads {
		org[p.Key(i)] = p.Tenants[p.Workloads[i].Tenant].Organization
	}
	taxHosts := map[string]bool{}
	for _, a := range res.Placements {
		if org[a.Workload] == "government" {
			taxHosts[a.Host] = true
		}
	}
	if len(taxHosts) != 2 {
		t.Errorf("tax office on hosts %v, want 2 hosts (rack spread)", taxHosts)
	}
	for _, a := range res.Placements {
		if org[a.Workload] != "government" && taxHosts[a.Host] {
			t.Errorf("%s[%d] shares host %s with restricted data", a.Workload, a.Replica, a.Host)
		}
		for _, b := range res.Placements {
			if a.Host != b.Host || org[a.Workload] == org[b.Workload] {
				continue
			}
			// Different organizations on one host: each side's wrapper
			// must be a vm (they are on the host's kernel, not VM nodes).
			if a.Tier != "vm" && a.Tier != "host" {
				t.Errorf("%s[%d] (%s) shares host %s with %s at tier %s, want ≥ vm", a.Workload, a.Replica, org[a.Workload], a.Host, b.Workload, a.Tier)
			}
		}
	}
}

func TestFourQuestions(t *testing.T) {
	p, res := plan(t, "four-questions")
	top := p.Topology
	by := map[string][]scheduler.Placement{}
	for _, a := range res.Placements {
		by[a.Workload] = append(by[a.Workload], a)
	}
	domain := func(node, level string) string {
		n, ok := top.Node(node)
		if !ok {
			t.Fatalf("unknown node %s", node)
		}
		l, _ := top.Level(level)
		return top.DomainName(n, l)
	}
	distinct := func(wl string, levels ...string) {
		t.Helper()
		for _, level := range levels {
			seen := map[string]bool{}
			for _, a := range by[wl] {
				d := domain(a.Node, level)
				if d == "" || seen[d] {
					t.Errorf("%s: replicas share %s %q (or have none): %+v", wl, level, d, by[wl])
				}
				seen[d] = true
			}
		}
	}
	// (1) different VMs on different physical hosts
	distinct("careful/q1-vms", "vm", "host")
	// (2) and different racks, PDUs and switches
	distinct("careful/q2-racks", "vm", "host", "rack", "pdu", "switch")
	// (3) two datacenters in different weather and seismic zones, on earth
	distinct("careful/q3-datacenters", "datacenter", "weather", "seismic")
	for _, a := range by["careful/q3-datacenters"] {
		if domain(a.Node, "region") != "eu" {
			t.Errorf("q3 replica left earth: %+v", a)
		}
	}
	// (4) one replica on the moon
	moon := 0
	for _, a := range by["careful/q4-moon"] {
		if domain(a.Node, "region") == "moon" {
			moon++
		}
	}
	if moon != 1 {
		t.Errorf("q4 replicas on the moon = %d, want 1: %+v", moon, by["careful/q4-moon"])
	}
}
