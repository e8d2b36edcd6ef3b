package network

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "rung.dev/rung/api/v1"
)

func TestNodeSubnet(t *testing.T) {
	pool := netip.MustParsePrefix("10.88.0.0/16")
	tests := []struct {
		bits, index int
		want        string
		err         bool
	}{
		{8, 0, "10.88.0.0/24", false},
		{8, 3, "10.88.3.0/24", false},
		{8, 255, "10.88.255.0/24", false},
		{8, 256, "", true},
		{4, 1, "10.88.16.0/20", false},
		{15, 0, "", true}, // a /31 holds no replica
	}
	for _, tt := range tests {
		got, err := NodeSubnet(pool, tt.bits, tt.index)
		if (err != nil) != tt.err {
			t.Errorf("NodeSubnet(%d, %d) error %v, want error %v", tt.bits, tt.index, err, tt.err)
			continue
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("NodeSubnet(%d, %d) = %s, want %s", tt.bits, tt.index, got, tt.want)
		}
	}
}

func TestAllocate(t *testing.T) {
	sub := netip.MustParsePrefix("10.88.3.0/29") // .1 gateway, .2-.6 replicas, .7 broadcast
	var used []netip.Addr
	var got []string
	for range 5 {
		a, err := Allocate(sub, used)
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, a)
		got = append(got, a.String())
	}
	if diff := cmp.Diff([]string{"10.88.3.2", "10.88.3.3", "10.88.3.4", "10.88.3.5", "10.88.3.6"}, got); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if _, err := Allocate(sub, used); !errors.Is(err, ErrExhausted) {
		t.Errorf("full subnet: %v, want ErrExhausted", err)
	}
	// A freed address is taken again first.
	a, err := Allocate(sub, used[1:])
	if err != nil || a.String() != "10.88.3.2" {
		t.Errorf("after freeing .2: %s, %v", a, err)
	}
}

func TestForWorkloadAndNodePorts(t *testing.T) {
	set := &v1.Set{
		Topologies: []v1.Topology{{Metadata: v1.ObjectMeta{Name: "campus"}, Spec: v1.TopologySpec{
			Nodes:   []v1.Node{{Name: "h1"}, {Name: "h2"}},
			Network: &v1.TopologyNetwork{Pool: "10.88.0.0/16", NodePorts: "30000-30002"},
		}}},
		Workloads: []v1.Workload{
			{Metadata: v1.ObjectMeta{Name: "web", Tenant: "acme"}, Spec: v1.WorkloadSpec{Ports: []v1.Port{
				{Port: 8080, Publish: true}, {Port: 9090, AllowTenants: []string{"geo"}}, {Port: 53, Protocol: v1.ProtocolUDP, Publish: true, NodePort: 30001}}}},
			{Metadata: v1.ObjectMeta{Name: "api", Tenant: "acme"}, Spec: v1.WorkloadSpec{Egress: true, Ports: []v1.Port{{Port: 8080, Publish: true}}}},
		},
	}
	got, err := ForWorkload(set, "h2", &set.Workloads[0])
	if err != nil {
		t.Fatal(err)
	}
	ports, _ := NodePorts(set)
	want := &Spec{Pool: "10.88.0.0/16", Subnet: "10.88.1.0/24", Workload: "web", Ports: []Port{
		{Port: 8080, Protocol: "tcp", NodePort: ports["acme/web 8080/tcp"]},
		{Port: 9090, Protocol: "tcp", AllowTenants: []string{"geo"}},
		{Port: 53, Protocol: "udp", NodePort: 30001},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ForWorkload (-want +got):\n%s", diff)
	}
	// Three node ports, all different, the explicit one kept.
	seen := map[int]bool{}
	for _, p := range ports {
		if p < 30000 || p > 30002 || seen[p] {
			t.Errorf("node ports %v: want distinct ports in 30000-30002", ports)
		}
		seen[p] = true
	}
	// What users read: only published ports, with their node ports.
	wantPub := map[string][]string{
		"acme/web": {fmt.Sprintf("%d/tcp->8080", ports["acme/web 8080/tcp"]), "30001/udp->53"},
		"acme/api": {fmt.Sprintf("%d/tcp->8080", ports["acme/api 8080/tcp"])},
	}
	if diff := cmp.Diff(wantPub, Published(set)); diff != "" {
		t.Errorf("Published (-want +got):\n%s", diff)
	}
	// One more published port does not fit the range.
	set.Workloads[1].Spec.Ports = append(set.Workloads[1].Spec.Ports, v1.Port{Port: 1, Publish: true})
	if _, err := NodePorts(set); !errors.Is(err, ErrExhausted) {
		t.Errorf("full node-port range: %v, want ErrExhausted", err)
	}
	// A node of no networked topology gets no network.
	if s, err := ForWorkload(set, "h9", &set.Workloads[0]); s != nil || err != nil {
		t.Errorf("unknown node: %v, %v", s, err)
	}
}

func TestBuild(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	spec := Spec{Pool: "10.88.0.0/16", Subnet: "10.88.0.0/24", Ports: []Port{{Port: 8080, Protocol: "tcp", AllowTenants: []string{"geo", "acme"}, NodePort: 30080}}}
	got, err := Build(
		[]Replica{
			{ID: "b", Tenant: "beta", Iface: "rv2", Addr: a("10.88.0.3"), Spec: Spec{Pool: "10.88.0.0/16", Egress: true}},
			{ID: "a", Tenant: "acme", Iface: "rv1", Addr: a("10.88.0.2"), Spec: spec},
		},
		[]Remote{{Tenant: "acme", Addr: a("10.88.1.2")}},
		[]netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := Rules{
		Tenants: map[string][]netip.Addr{"acme": {a("10.88.0.2"), a("10.88.1.2")}, "beta": {a("10.88.0.3")}},
		Pools:   []netip.Prefix{netip.MustParsePrefix("10.88.0.0/16")},
		Deny:    []netip.Prefix{LinkLocal, netip.MustParsePrefix("192.0.2.7/32")},
		Replicas: []ReplicaRules{
			{ID: "a", Tenant: "acme", Iface: "rv1", Addr: a("10.88.0.2"), Gateway: a("10.88.0.1"),
				Ingress: []Allow{{Tenant: "acme"}, {Tenant: "geo", Protocol: "tcp", Port: 8080}},
				Publish: []Publish{{Protocol: "tcp", NodePort: 30080, Port: 8080}}},
			{ID: "b", Tenant: "beta", Iface: "rv2", Addr: a("10.88.0.3"), Egress: true, Ingress: []Allow{{Tenant: "beta"}}},
		},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("Build (-want +got):\n%s", diff)
	}
}
