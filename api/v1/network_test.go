package v1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func netTopology(name, pool string, bits int, nodes ...Node) Topology {
	t := topology(name, nodes...)
	t.Spec.Network = &TopologyNetwork{Pool: pool, NodeBits: bits}
	return t
}

func policyNet(n PolicyNetwork) Policy {
	return Policy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: ObjectMeta{Name: "site"}, Spec: PolicySpec{Network: n}}
}

// TestValidateNetworks checks pools, ports and egress: each bad input is
// one error naming its field, and the valid forms pass.
func TestValidateNetworks(t *testing.T) {
	acme := []Tenant{tenant("acme")}
	web := func(spec WorkloadSpec) []Workload { return []Workload{workload("acme", "web", spec)} }
	tests := []struct {
		name string
		set  Set
		want []string
	}{{
		name: "valid",
		set: Set{
			Topologies: []Topology{netTopology("north", "10.88.0.0/16", 8, node("h1", "")), netTopology("south", "10.89.0.0/16", 0, node("h2", ""))},
			Tenants:    acme,
			Workloads: web(WorkloadSpec{Egress: true, Ports: []Port{
				{Port: 8080, Publish: true, NodePort: 30080}, {Port: 8080, Protocol: ProtocolUDP, AllowTenants: []string{"geo"}}, {Port: 80}}}),
			Policies: []Policy{policyNet(PolicyNetwork{EgressTenants: []string{"acme"}, PrivilegedPortTenants: []string{"*"}})},
		},
	}, {
		name: "overlapping pools",
		set:  Set{Topologies: []Topology{netTopology("north", "10.88.0.0/16", 8, node("h1", "")), netTopology("south", "10.88.128.0/17", 7, node("h2", ""))}},
		want: []string{"Topology south: spec.network.pool: 10.88.128.0/17 overlaps the pool 10.88.0.0/16 of Topology north (fix: give each Topology a pool of its own)"},
	}, {
		name: "pool too small for the nodes",
		set:  Set{Topologies: []Topology{netTopology("north", "10.88.0.0/24", 1, node("h1", ""), node("h2", ""), node("h3", ""))}},
		want: []string{"Topology north: spec.network.nodeBits: pool 10.88.0.0/24 split 2 ways is too small for 3 nodes (fix: raise nodeBits or use a larger pool)"},
	}, {
		name: "node slices too small",
		set:  Set{Topologies: []Topology{netTopology("north", "10.88.0.0/24", 6, node("h1", ""))}},
		want: []string{"Topology north: spec.network.nodeBits: pool 10.88.0.0/24 split 64 ways leaves each node a /30, too small for replicas (fix: use a larger pool or nodeBits of at most 5)"},
	}, {
		name: "not a CIDR",
		set:  Set{Topologies: []Topology{netTopology("north", "10.88.0.1/16", 8, node("h1", "")), netTopology("south", "fe80::/64", 8, node("h2", ""))}},
		want: []string{
			"Topology north: spec.network.pool: 10.88.0.1/16 has host bits set (fix: write 10.88.0.0/16)",
			`Topology south: spec.network.pool: "fe80::/64" is not an IPv4 CIDR (fix: set an IPv4 CIDR such as 10.88.0.0/16)`,
		},
	}, {
		name: "port out of range",
		set:  Set{Tenants: acme, Workloads: web(WorkloadSpec{Ports: []Port{{Port: 70000}, {Port: 0}}})},
		want: []string{
			"Workload acme/web: spec.ports[0].port: 70000 is out of range (fix: use a port from 1 to 65535)",
			"Workload acme/web: spec.ports[1].port: 0 is out of range (fix: use a port from 1 to 65535)",
		},
	}, {
		name: "privileged port without consent",
		set:  Set{Tenants: acme, Workloads: web(WorkloadSpec{Ports: []Port{{Port: 80, Publish: true}}})},
		want: []string{"Workload acme/web: spec.ports[0].port: 80 is a privileged port (CIS 5.8) (fix: use a port of 1024 or above, or have an operator list acme in a Policy's spec.network.privilegedPortTenants)"},
	}, {
		name: "same port twice",
		set:  Set{Tenants: acme, Workloads: web(WorkloadSpec{Ports: []Port{{Port: 8080}, {Port: 8080, Protocol: ProtocolTCP}}})},
		want: []string{"Workload acme/web: spec.ports[1].port: 8080/tcp is listed twice (fix: list each port once)"},
	}, {
		name: "same node port published twice",
		set: Set{Tenants: acme, Workloads: []Workload{
			workload("acme", "web", WorkloadSpec{Ports: []Port{{Port: 8080, Publish: true, NodePort: 30080}}}),
			workload("acme", "api", WorkloadSpec{Ports: []Port{{Port: 9090, Publish: true, NodePort: 30080}}}),
		}},
		want: []string{"Workload acme/api: spec.ports[0].nodePort: 30080 is already published by acme/web spec.ports[0] (fix: publish each node port once, or leave nodePort out to get a free one)"},
	}, {
		name: "node port outside the range",
		set:  Set{Tenants: acme, Workloads: web(WorkloadSpec{Ports: []Port{{Port: 8080, Publish: true, NodePort: 8080}}})},
		want: []string{"Workload acme/web: spec.ports[0].nodePort: 8080 is outside the node-port range (fix: pick a port in the Topology's spec.network.nodePorts (default 30000-32767), or leave it out)"},
	}, {
		name: "egress without consent",
		set:  Set{Tenants: acme, Workloads: web(WorkloadSpec{Egress: true})},
		want: []string{"Workload acme/web: spec.egress: tenant acme has no egress consent from the site (fix: remove egress, or have an operator list acme in a Policy's spec.network.egressTenants)"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, fe := range fieldErrors(t, tt.set.Validate()) {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}
