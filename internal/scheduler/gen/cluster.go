package gen

import (
	"fmt"
	"math/rand/v2"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
)

// Shape of the benchmark datacenter.
const (
	clusterDatacenters  = 5
	clusterRacksPerDC   = 20
	clusterOrgs         = 15
	clusterHostCPU      = "64"
	clusterHostMemory   = "256Gi"
	clusterMinReplicas  = 2
	clusterMaxReplicas  = 10
	clusterRackMax      = 2 // a workload's replicas per rack
	clusterDCMinDomains = 2
)

// Cluster returns a benchmark problem: nodes physical hosts (64 cores,
// 256Gi, runtimes container, sandbox and vm) spread round-robin over 5
// datacenters of 20 racks each, each rack on its own PDU; tenants tenants
// from 15 organizations with mixed trust and data classes (a few
// restricted, one dedicated); and workloads of 2–10 replicas (250m–4
// cores, 1–8 GiB per core) adding up to replicas, each with a 3-level hard
// spread: at least 2 datacenters, at most 2 replicas per rack and 1 per
// host. The spread is satisfiable whenever nodes ≥ 100.
func Cluster(nodes, replicas, tenants int, seed int64) *v1.Set {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x636c7573))
	r := &random{c: rng, set: &v1.Set{}}

	top := v1.Topology{TypeMeta: typeMeta(v1.KindTopology), Metadata: v1.ObjectMeta{Name: "bench"}}
	racks := clusterDatacenters * clusterRacksPerDC
	cpu, mem := resource.MustParse(clusterHostCPU), resource.MustParse(clusterHostMemory)
	for i := range nodes {
		rack := i % racks
		dc := rack / clusterRacksPerDC
		name := fmt.Sprintf("dc%d-r%02d-h%03d", dc, rack%clusterRacksPerDC, i/racks)
		top.Spec.Nodes = append(top.Spec.Nodes, v1.Node{
			Name: name,
			Domains: map[string]string{
				"region":     "eu",
				"datacenter": fmt.Sprintf("dc%d", dc),
				"rack":       fmt.Sprintf("dc%d-r%02d", dc, rack%clusterRacksPerDC),
				"pdu":        fmt.Sprintf("dc%d-p%02d", dc, rack%clusterRacksPerDC),
				"weather":    fmt.Sprintf("zone%d", dc/2),
			},
			Capacity: v1.Resources{CPU: new(cpu.DeepCopy()), Memory: new(mem.DeepCopy())},
			Runtimes: []v1.Tier{v1.TierContainer, v1.TierSandbox, v1.TierVM},
		})
	}
	r.set.Topologies = append(r.set.Topologies, top)

	// Tenants: mixed trust; a data class per tenant, most internal.
	classes := make([]v1.DataClass, tenants)
	for t := range tenants {
		name := fmt.Sprintf("t%02d", t)
		ten := v1.Tenant{
			TypeMeta: typeMeta(v1.KindTenant),
			Metadata: v1.ObjectMeta{Name: name},
			Spec: v1.TenantSpec{
				Organization: fmt.Sprintf("org%02d", t%clusterOrgs),
				Trust:        pick(r, v1.TrustTrusted, v1.TrustTrusted, v1.TrustUntrusted),
				Dedicated:    t == 7,
			},
		}
		switch {
		case t == 3 || t == 29:
			classes[t] = v1.DataRestricted
		case t%7 == 5:
			classes[t] = v1.DataConfidential
		case t%5 == 1:
			classes[t] = v1.DataPublic
		default:
			classes[t] = v1.DataInternal
		}
		r.set.Tenants = append(r.set.Tenants, ten)
	}

	// Workloads up to the replica count.
	for i, left := 0, replicas; left > 0; i++ {
		n := r.between(clusterMinReplicas, clusterMaxReplicas)
		if left-n < clusterMinReplicas {
			n = left
		}
		left -= n
		t := r.c.IntN(tenants)
		milli := pick(r, 250, 500, 500, 1000, 1000, 2000, 4000)
		gibPerCore := pick(r, 1, 2, 4, 4, 8)
		privilege := v1.PrivilegeStandard
		if r.chance(5) {
			privilege = v1.PrivilegeElevated
		}
		r.set.Workloads = append(r.set.Workloads, v1.Workload{
			TypeMeta: typeMeta(v1.KindWorkload),
			Metadata: v1.ObjectMeta{Name: fmt.Sprintf("w%05d", i), Tenant: fmt.Sprintf("t%02d", t)},
			Spec: v1.WorkloadSpec{
				Image:    "registry.example/app:1",
				Replicas: &n,
				Resources: v1.Resources{
					CPU:    qty(fmt.Sprintf("%dm", milli)),
					Memory: qty(fmt.Sprintf("%dMi", milli*gibPerCore*1024/1000)),
				},
				DataClass: classes[t],
				Privilege: privilege,
				Spread: []v1.Spread{
					{Level: "datacenter", MinDomains: clusterDCMinDomains},
					{Level: "rack", MaxPerDomain: clusterRackMax},
					{Level: "host", MaxPerDomain: 1},
				},
			},
		})
	}
	return r.set
}
