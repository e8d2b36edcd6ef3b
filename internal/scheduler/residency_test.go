package scheduler_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// twoSites is two Topology objects, one pool: site west (two racks) and
// site north (one rack).
const twoSites = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: west}
spec:
  nodes:
  - {name: w1, domains: {region: west, rack: w-r1}, capacity: {cpu: 16, memory: 64Gi}}
  - {name: w2, domains: {region: west, rack: w-r2}, capacity: {cpu: 16, memory: 64Gi}}
  - {name: w3, domains: {region: west, rack: w-r2}, capacity: {cpu: 16, memory: 64Gi}}
---
apiVersion: rung.dev/v1
kind: Topology
metadata: {name: north}
spec:
  nodes:
  - {name: n1, domains: {region: north, rack: n-r1}, capacity: {cpu: 64, memory: 256Gi}}
  - {name: n2, domains: {region: north, rack: n-r2}, capacity: {cpu: 64, memory: 256Gi}}
---
`

func planSet(t *testing.T, manifests string, bound map[string]string) (*v1.Set, *scheduler.Result) {
	t.Helper()
	set, err := v1.Decode("test.yaml", []byte(manifests))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	set.ApplyDefaults()
	if err := set.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	p, err := scheduler.ProblemOf(set, topology.DefaultRuntimes)
	if err != nil {
		t.Fatal(err)
	}
	p.BindVolumes(bound)
	res, err := scheduler.Plan(p, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The independent checker sees every constraint respected.
	if bad := bruteforce.Check(set, &tenancy.Rules{}, res); len(bad) > 0 {
		t.Errorf("checker: %v", bad)
	}
	return set, res
}

func TestResidencyTwoTopologies(t *testing.T) {
	tenants := `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
spec: {placement: {domains: {region: [north]}}}
---
apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: free}
---
`
	wl := func(tenant, name string, replicas int, extra string) string {
		return "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: " + name + ", tenant: " + tenant + "}\nspec:\n  image: busybox:latest\n  replicas: " +
			strconv.Itoa(replicas) + "\n  resources: {cpu: 1, memory: 1Gi}\n" + extra + "---\n"
	}
	tests := []struct {
		name      string
		workloads string
		want      map[string]string // workload → the region of each placed replica
		unplaced  []string          // substrings of the reasons
	}{{
		name:      "tenant ceiling",
		workloads: wl("acme", "web", 4, ""),
		want:      map[string]string{"acme/web": "north"},
	}, {
		name:      "no residency goes anywhere, the cheapest first",
		workloads: wl("free", "web", 2, "  spread: [{level: region, minDomains: 2}]\n"),
		want:      map[string]string{"free/web": "north,west"},
	}, {
		name:      "workload narrows to one rack",
		workloads: wl("acme", "db", 2, "  placement: {domains: {rack: [n-r2]}}\n"),
		want:      map[string]string{"acme/db": "n2"},
	}, {
		name:      "residency excluding every node",
		workloads: wl("free", "db", 1, "  placement: {domains: {region: [south]}}\n"),
		unplaced:  []string{"residency: removed 5 of 5 nodes", "region=", "outside the residency region in [south]", "fix: widen spec.placement.domains.region"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, res := planSet(t, twoSites+tenants+tt.workloads, nil)
			got := map[string]string{}
			for _, p := range res.Placements {
				v := regionOf(p.Node)
				if strings.Contains(tt.name, "rack") {
					v = p.Node
				}
				if cur := got[p.Workload]; cur != "" && !strings.Contains(cur, v) {
					v = sortedJoin(cur, v)
				} else if cur != "" {
					v = cur
				}
				got[p.Workload] = v
			}
			if tt.want == nil {
				tt.want = map[string]string{}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("placements (-want +got):\n%s\nunplaced: %+v", diff, res.Unplaced)
			}
			checkUnplaced(t, res, tt.unplaced)
		})
	}
}

func TestVolumePlacement(t *testing.T) {
	base := twoSites + `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pg, tenant: acme}
spec: {size: 1Gi}
---
`
	db := `apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec:
  image: busybox:latest
  replicas: 3
  resources: {cpu: 1, memory: 1Gi}
  spread: [{level: rack, maxPerDomain: 1}]
  volumes: [{name: pg, mountPath: /data, perReplica: true}]
`
	t.Run("perReplica with rack spread", func(t *testing.T) {
		_, res := planSet(t, base+db, nil)
		racks := map[string]bool{}
		for _, p := range res.Placements {
			racks[rackOf(p.Node)] = true
		}
		if len(res.Placements) != 3 || len(racks) != 3 {
			t.Errorf("placements %+v (%d racks), unplaced %+v; want 3 in 3 racks", res.Placements, len(racks), res.Unplaced)
		}
	})
	t.Run("bound instances pin their replicas", func(t *testing.T) {
		bound := map[string]string{"acme/pg-0": "w1", "acme/pg-1": "n2", "acme/pg-2": "w3"}
		_, res := planSet(t, base+db, bound)
		got := map[int]string{}
		for _, p := range res.Placements {
			got[p.Replica] = p.Node
		}
		if diff := cmp.Diff(map[int]string{0: "w1", 1: "n2", 2: "w3"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a lost node's volume is reported, never recreated", func(t *testing.T) {
		bound := map[string]string{"acme/pg-0": "gone", "acme/pg-1": "n2", "acme/pg-2": "w3"}
		_, res := planSet(t, base+db, bound)
		if len(res.Unplaced) != 1 || res.Unplaced[0].Replica != 0 {
			t.Fatalf("unplaced %+v, want replica 0", res.Unplaced)
		}
		if r := strings.Join(res.Unplaced[0].Reasons, "; "); !strings.Contains(r, "volume pg-0 is bound to node gone") || !strings.Contains(r, "never recreated empty") {
			t.Errorf("reasons: %s", r)
		}
	})
	t.Run("a missing volume waits", func(t *testing.T) {
		_, res := planSet(t, twoSites+"apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\n---\n"+db, nil)
		if len(res.Placements) != 0 || len(res.Unplaced) != 3 || !strings.Contains(strings.Join(res.Unplaced[0].Reasons, ";"), "volume pg does not exist (fix: apply a Volume named pg") {
			t.Errorf("placements %+v, unplaced %+v", res.Placements, res.Unplaced)
		}
	})
	t.Run("restricted volume: rule 1 keeps others off its host", func(t *testing.T) {
		m := strings.Replace(base, "spec: {size: 1Gi}", "spec: {size: 1Gi, dataClass: restricted}", 1) +
			"apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: one, tenant: acme}\nspec: {image: busybox:latest, resources: {cpu: 1, memory: 1Gi}, volumes: [{name: pg, mountPath: /data}]}\n---\n" +
			"apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: other}\n---\n" +
			"apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: web, tenant: other}\nspec: {image: busybox:latest, resources: {cpu: 1, memory: 1Gi}}\n"
		_, res := planSet(t, m, map[string]string{"acme/pg": "w1"})
		nodes := map[string]string{}
		for _, p := range res.Placements {
			nodes[p.Workload] = p.Node + " " + p.Tier
		}
		if nodes["acme/one"] != "w1 container" || strings.HasPrefix(nodes["other/web"], "w1 ") && !strings.HasSuffix(nodes["acme/one"], "host") {
			t.Errorf("placements %v: want acme/one on w1 and other/web elsewhere (or acme on its own host)", nodes)
		}
	})
}

func regionOf(node string) string {
	if strings.HasPrefix(node, "n") {
		return "north"
	}
	return "west"
}

func rackOf(node string) string {
	return map[string]string{"w1": "w-r1", "w2": "w-r2", "w3": "w-r2", "n1": "n-r1", "n2": "n-r2"}[node]
}

func sortedJoin(a, b string) string {
	if a < b {
		return a + "," + b
	}
	return b + "," + a
}
