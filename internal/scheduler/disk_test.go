package scheduler_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/scheduler/bruteforce"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// diskNodes are two equal nodes (a third may follow); a is first, so the
// cheapest without the disk filter.
const diskNodes = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: dc}
spec:
  nodes:
  - {name: a, domains: {rack: r1}, capacity: {cpu: 16, memory: 64Gi}}
  - {name: b, domains: {rack: r2}, capacity: {cpu: 16, memory: 64Gi}}
`

const acme = "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: acme}\n---\n"

// TestVolumeDisk: a node takes a volume not bound yet only when its disk
// has room for the volume's full size, after the volumes bound to it and
// those this plan already put there.
func TestVolumeDisk(t *testing.T) {
	const gi = int64(1) << 30
	nodes := diskNodes + "  - {name: c, domains: {rack: r3}, capacity: {cpu: 16, memory: 64Gi}}\n---\n" + acme
	vol := func(size string) string {
		return "apiVersion: rung.dev/v1\nkind: Volume\nmetadata: {name: pg, tenant: acme}\nspec: {size: " + size + "}\n---\n"
	}
	wl := func(replicas, mount string) string {
		return "apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: db, tenant: acme}\nspec:\n  image: busybox:latest\n  replicas: " + replicas +
			"\n  resources: {cpu: 1, memory: 1Gi}\n  volumes: [" + mount + "]\n---\n"
	}
	tests := []struct {
		name     string
		manifest string
		disk     map[string]scheduler.Disk
		bound    map[string]string
		want     map[int]string // replica → node
		unplaced []string       // substrings of the reasons
	}{{
		name:     "no disk reports: not checked",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		want:     map[int]string{0: "a"},
	}, {
		name:     "too small a node is passed over",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 5 * gi}, "b": {Free: 20 * gi}},
		want:     map[int]string{0: "b"},
	}, {
		name:     "a node with no report is not checked",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 5 * gi}, "b": {Free: 5 * gi}},
		want:     map[int]string{0: "c"},
	}, {
		name:     "exactly the size fits",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 10 * gi}},
		want:     map[int]string{0: "a"},
	}, {
		name:     "bound volumes count against the node",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 20 * gi, Bound: 15 * gi}, "b": {Free: 12 * gi}, "c": {Free: 4 * gi}},
		want:     map[int]string{0: "b"},
	}, {
		name:     "too large for every node: refused with the reason and the fix",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 20 * gi, Bound: 15 * gi}, "b": {Free: 8 * gi}, "c": {Free: 9 * gi}},
		unplaced: []string{
			"disk: removed 3 of 3 nodes",
			"volume pg needs 10Gi of disk, node a has 5.0Gi left for volumes (20Gi free, 15Gi bound to volumes)",
			"fix: a smaller spec.size of Volume pg",
			"smallest change: free 1.0Gi more disk for volumes on node c, or make Volume pg's spec.size smaller",
		},
	}, {
		name:     "a bound volume takes no new disk",
		manifest: vol("10Gi") + wl("1", "{name: pg, mountPath: /data}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 20 * gi}, "b": {Free: 10 * gi, Bound: 10 * gi}},
		bound:    map[string]string{"acme/pg": "b"},
		want:     map[int]string{0: "b"},
	}, {
		name:     "perReplica volumes of one plan add up on a node",
		manifest: vol("8Gi") + wl("2", "{name: pg, mountPath: /data, perReplica: true}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 12 * gi}, "b": {Free: 1 * gi}, "c": {Free: 8 * gi}},
		want:     map[int]string{0: "a", 1: "c"},
	}, {
		name:     "perReplica: the second finds no room and says why",
		manifest: vol("8Gi") + wl("2", "{name: pg, mountPath: /data, perReplica: true}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 12 * gi}, "b": {Free: 1 * gi}, "c": {Free: 2 * gi}},
		want:     map[int]string{0: "a"},
		unplaced: []string{"volume pg-1 needs 8.0Gi of disk, node a has 4.0Gi left for volumes (12Gi free, 8.0Gi to volumes of this plan)"},
	}, {
		name:     "one disk shared by nodes: this plan's volumes count on all of them",
		manifest: vol("8Gi") + wl("2", "{name: pg, mountPath: /data, perReplica: true}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 12 * gi, Shared: "m"}, "b": {Free: 12 * gi, Shared: "m"}, "c": {Free: 1 * gi}},
		want:     map[int]string{0: "a"},
		unplaced: []string{"disk: removed 3 of 3 nodes", "8.0Gi to volumes of this plan"},
	}, {
		name:     "shared read-only volume: charged once",
		manifest: vol("8Gi") + wl("2", "{name: pg, mountPath: /data, readOnly: true}"),
		disk:     map[string]scheduler.Disk{"a": {Free: 9 * gi}, "b": {Free: 1 * gi}, "c": {Free: 1 * gi}},
		want:     map[int]string{0: "a", 1: "a"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := v1.Decode("test.yaml", []byte(nodes+tt.manifest))
			if err != nil {
				t.Fatal(err)
			}
			set.ApplyDefaults()
			if err := set.Validate(); err != nil {
				t.Fatal(err)
			}
			p, err := scheduler.ProblemOf(set, topology.DefaultRuntimes)
			if err != nil {
				t.Fatal(err)
			}
			p.BindVolumes(tt.bound)
			if tt.disk != nil {
				p.SetDisk(tt.disk)
			}
			res, err := scheduler.Plan(p, scheduler.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if bad := bruteforce.Check(set, &tenancy.Rules{}, res); len(bad) > 0 {
				t.Errorf("checker: %v", bad)
			}
			got := map[int]string{}
			for _, pl := range res.Placements {
				got[pl.Replica] = pl.Node
			}
			if tt.want == nil {
				tt.want = map[int]string{}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("placements (-want +got):\n%s\nunplaced: %+v", diff, res.Unplaced)
			}
			checkUnplaced(t, res, tt.unplaced)
		})
	}
}

// TestVolumeDiskExplain: explain names the disk filter on each node it
// removes, with the fix.
func TestVolumeDiskExplain(t *testing.T) {
	set, err := v1.Decode("test.yaml", []byte(diskNodes+"---\n"+acme+`apiVersion: rung.dev/v1
kind: Volume
metadata: {name: pg, tenant: acme}
spec: {size: 2Gi}
---
apiVersion: rung.dev/v1
kind: Workload
metadata: {name: db, tenant: acme}
spec: {image: busybox:latest, resources: {cpu: 1, memory: 1Gi}, volumes: [{name: pg, mountPath: /data}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	set.ApplyDefaults()
	p, err := scheduler.ProblemOf(set, topology.DefaultRuntimes)
	if err != nil {
		t.Fatal(err)
	}
	p.SetDisk(map[string]scheduler.Disk{"a": {Free: 1 << 30}, "b": {Free: 3 << 30}})
	res, err := scheduler.Plan(p, scheduler.Options{Explain: "acme/db"})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Node, Filter, Reason string }
	var got []row
	for _, r := range res.Explain.Replicas {
		for _, n := range r.Nodes {
			got = append(got, row{n.Node, n.Filter, n.Reason})
		}
	}
	want := []row{
		{"a", "disk", "volume pg needs 2.0Gi of disk, node a has 1.0Gi left for volumes (1.0Gi free) (fix: a smaller spec.size of Volume pg, free disk in the volume directory of a, or a node with more disk)"},
		{"b", "", got[len(got)-1].Reason},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}
}

// checkUnplaced checks that the reasons res gives for what it left
// unplaced include each of want, and that it placed everything when want
// is empty.
func checkUnplaced(t *testing.T, res *scheduler.Result, want []string) {
	t.Helper()
	var reasons []string
	for _, u := range res.Unplaced {
		reasons = append(reasons, u.Reasons...)
	}
	all := strings.Join(reasons, "\n")
	for _, s := range want {
		if !strings.Contains(all, s) {
			t.Errorf("reasons\n%s\nlack %q", all, s)
		}
	}
	if len(want) == 0 && len(res.Unplaced) > 0 {
		t.Errorf("unplaced: %+v", res.Unplaced)
	}
}
