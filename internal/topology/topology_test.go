package topology_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

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
