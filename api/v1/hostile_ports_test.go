package v1

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPrivilegedNodePort: a Topology's node-port range reaching below 1024
// does not give the nodes' own privileged ports (ssh, DNS) to every
// tenant: a node port below 1024 needs the site's consent, as a port
// does (CIS 5.8); with it, the same workload is valid.
func TestPrivilegedNodePort(t *testing.T) {
	topo := netTopology("north", "10.88.0.0/16", 8, node("h1", ""))
	topo.Spec.Network.NodePorts = "1-65535"
	web := []Workload{workload("acme", "web", WorkloadSpec{Ports: []Port{{Port: 8022, Publish: true, NodePort: 22}, {Port: 8080, Publish: true, NodePort: 8080}}})}
	tests := []struct {
		name     string
		policies []Policy
		want     []string
	}{{
		name: "without consent",
		want: []string{"Workload acme/web: spec.ports[0].nodePort: 22 is a privileged port of the nodes (CIS 5.8) (fix: leave nodePort out, or have an operator list acme in a Policy's spec.network.privilegedPortTenants)"},
	}, {
		name:     "consent for another tenant",
		policies: []Policy{policyNet(PolicyNetwork{PrivilegedPortTenants: []string{"geo"}})},
		want:     []string{"Workload acme/web: spec.ports[0].nodePort: 22 is a privileged port of the nodes (CIS 5.8) (fix: leave nodePort out, or have an operator list acme in a Policy's spec.network.privilegedPortTenants)"},
	}, {
		name:     "with consent",
		policies: []Policy{policyNet(PolicyNetwork{PrivilegedPortTenants: []string{"acme"}})},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := Set{Topologies: []Topology{topo}, Tenants: []Tenant{tenant("acme")}, Workloads: web, Policies: tt.policies}
			var got []string
			for _, fe := range fieldErrors(t, set.Validate()) {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}
