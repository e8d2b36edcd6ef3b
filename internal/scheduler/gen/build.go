package gen

import (
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/tenancy"
)

// Small constructors for hand-written problems in tests.

// Node returns a node of 4 cores and 8Gi with the given domains and
// runtimes (none: the default). host names its physical host for a VM node.
func Node(name, host string, domains map[string]string, runtimes ...v1.Tier) v1.Node {
	return v1.Node{
		Name: name, Host: host, Domains: domains, Runtimes: runtimes,
		Capacity: v1.Resources{CPU: qty("4"), Memory: qty("8Gi")},
	}
}

// Topology returns a Topology document of nodes.
func Topology(nodes ...v1.Node) v1.Topology {
	return v1.Topology{TypeMeta: typeMeta(v1.KindTopology), Metadata: v1.ObjectMeta{Name: "topology"}, Spec: v1.TopologySpec{Nodes: nodes}}
}

// Tenant returns a tenant of organization org.
func Tenant(name, org string) v1.Tenant {
	return v1.Tenant{TypeMeta: typeMeta(v1.KindTenant), Metadata: v1.ObjectMeta{Name: name}, Spec: v1.TenantSpec{Organization: org}}
}

// Workload returns a workload of tenant with replicas of cpu and 1Gi each.
func Workload(tenant, name string, replicas int, cpu string) v1.Workload {
	return v1.Workload{
		TypeMeta: typeMeta(v1.KindWorkload),
		Metadata: v1.ObjectMeta{Name: name, Tenant: tenant},
		Spec: v1.WorkloadSpec{
			Image: "registry.example/app:1", Replicas: &replicas,
			Resources: v1.Resources{CPU: qty(cpu), Memory: qty("1Gi")},
		},
	}
}

// Quantity parses a Kubernetes quantity, panicking on a bad one.
func Quantity(s string) *resource.Quantity { return qty(s) }

// Rules compiles the operator rules of set's policies, in order.
func Rules(set *v1.Set) (*tenancy.Rules, error) { return tenancy.FromPolicies(set.Policies) }
