package topology_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

func set(t *testing.T, y string) *v1.Set {
	t.Helper()
	s, err := v1.Decode("t.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

const campus = `apiVersion: rung.dev/v1
kind: Topology
metadata: {name: t}
spec:
  levels: [building]
  nodes:
  - {name: h1, domains: {region: moon, datacenter: dc1, rack: r1, pdu: p1, building: b1}, capacity: {cpu: 4, memory: 8Gi}}
  - {name: h2, domains: {region: moon, datacenter: dc1, rack: r2, pdu: p1}, capacity: {cpu: 4, memory: 8Gi}, runtimes: [container, vm]}
  - {name: h1-vm, host: h1, domains: {rack: r1}, capacity: {cpu: 2, memory: 2Gi}}
`

func TestBuild(t *testing.T) {
	top, err := topology.Build(set(t, campus).Topologies, topology.DefaultRuntimes)
	if err != nil {
		t.Fatal(err)
	}
	vm, _ := top.Node("h1-vm")
	h1, _ := top.Node("h1")
	n := top.Nodes[vm]
	if !n.VM || n.Host != h1 || top.HostName(vm) != "h1" {
		t.Errorf("VM node: %+v", n)
	}
	got := map[string]string{}
	for _, l := range []string{"region", "datacenter", "rack", "pdu", "building", "host", "vm", "seismic"} {
		li, ok := top.Level(l)
		if !ok {
			t.Fatalf("level %s missing", l)
		}
		got[l] = top.DomainName(vm, li)
	}
	want := map[string]string{"region": "moon", "datacenter": "dc1", "rack": "r1", "pdu": "p1", "building": "b1", "host": "h1", "vm": "h1-vm", "seismic": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("VM node inherits its host's domains (-want +got):\n%s", diff)
	}
	h2, _ := top.Node("h2")
	if rt := top.Nodes[h2].Runtimes; !rt.Has(tenancy.VM) || rt.Has(tenancy.Sandbox) {
		t.Errorf("h2 runtimes %s", rt)
	}
	if rt := top.Nodes[h1].Runtimes; rt != topology.DefaultRuntimes {
		t.Errorf("h1 default runtimes %s", rt)
	}
}

func TestMarkDown(t *testing.T) {
	tests := []struct {
		level, name string
		want        []string // nodes down
		err         error
	}{
		{"pdu", "p1", []string{"h1", "h1-vm", "h2"}, nil},
		{"rack", "r2", []string{"h2"}, nil},
		{"host", "h1", []string{"h1", "h1-vm"}, nil},
		{"vm", "h1-vm", []string{"h1-vm"}, nil},
		{"rack", "r9", nil, topology.ErrUnknown},
		{"planet", "x", nil, topology.ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.level+"="+tt.name, func(t *testing.T) {
			top, err := topology.Build(set(t, campus).Topologies, topology.DefaultRuntimes)
			if err != nil {
				t.Fatal(err)
			}
			_, err = top.MarkDown(tt.level, tt.name)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			var down []string
			for _, n := range top.Nodes {
				if n.Down {
					down = append(down, n.Name)
				}
			}
			slices.Sort(down)
			if diff := cmp.Diff(tt.want, down); diff != "" {
				t.Errorf("down (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDetected: a node offers what its manifest lists and its agent can
// run; a node that lists nothing offers what its agent detects, but host
// only when listed; a node without a report keeps what it had.
func TestDetected(t *testing.T) {
	s := func(tiers ...tenancy.Tier) tenancy.Set {
		var out tenancy.Set
		for _, x := range tiers {
			out = out.With(x)
		}
		return out
	}
	here := s(tenancy.Container, tenancy.Sandbox, tenancy.Host) // no bootable VM guest
	tests := []struct {
		name    string
		reports map[string]tenancy.Set
		want    map[string]tenancy.Set // node → runtimes after
		undet   map[string]tenancy.Set
		notes   int
	}{
		{name: "no reports", reports: nil,
			want: map[string]tenancy.Set{"h1": topology.DefaultRuntimes, "h2": s(tenancy.Container, tenancy.VM), "h1-vm": topology.DefaultRuntimes}},
		{name: "this machine everywhere", reports: map[string]tenancy.Set{"h1": here, "h2": here, "h1-vm": here},
			want:  map[string]tenancy.Set{"h1": s(tenancy.Container, tenancy.Sandbox), "h2": s(tenancy.Container), "h1-vm": s(tenancy.Container, tenancy.Sandbox)},
			undet: map[string]tenancy.Set{"h2": s(tenancy.VM)}, notes: 1},
		{name: "agent with only runc", reports: map[string]tenancy.Set{"h1": s(tenancy.Container, tenancy.Host)},
			want: map[string]tenancy.Set{"h1": s(tenancy.Container), "h2": s(tenancy.Container, tenancy.VM), "h1-vm": topology.DefaultRuntimes}, notes: 1},
		{name: "agent with everything", reports: map[string]tenancy.Set{"h2": s(tenancy.Container, tenancy.Sandbox, tenancy.VM, tenancy.Host)},
			want: map[string]tenancy.Set{"h1": topology.DefaultRuntimes, "h2": s(tenancy.Container, tenancy.VM), "h1-vm": topology.DefaultRuntimes}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			top, err := topology.Build(set(t, campus).Topologies, topology.DefaultRuntimes)
			if err != nil {
				t.Fatal(err)
			}
			notes := top.Detected(func(n string) (tenancy.Set, bool) { r, ok := tc.reports[n]; return r, ok })
			got, undet := map[string]tenancy.Set{}, map[string]tenancy.Set{}
			for _, n := range top.Nodes {
				got[n.Name] = n.Runtimes
				if n.Undetected != 0 {
					undet[n.Name] = n.Undetected
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("runtimes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.undet, undet, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("undetected (-want +got):\n%s", diff)
			}
			if len(notes) != tc.notes {
				t.Errorf("notes %q, want %d", notes, tc.notes)
			}
		})
	}
}
