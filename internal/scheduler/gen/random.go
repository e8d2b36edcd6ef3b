// Package gen makes deterministic placement problems as manifest sets
// (api/v1 types built in Go, no YAML): small random ones for property tests
// and fuzzing, and large datacenter-shaped ones for benchmarks. The same
// seed always gives the same set.
package gen

import (
	"fmt"
	"math/rand/v2"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
)

// Size bounds a random problem.
type Size struct {
	MinNodes, MaxNodes int // nodes in the topology, physical and VM
	MaxTenants         int // at least one tenant
	MaxWorkloads       int // at least one workload
	MaxReplicas        int // per workload, at least one
}

// Small is the default size of Random: 2–8 nodes, 1–4 tenants, 1–4
// workloads of 1–3 replicas.
func Small() Size {
	return Size{MinNodes: 2, MaxNodes: 8, MaxTenants: 4, MaxWorkloads: 4, MaxReplicas: 3}
}

// Tiny is small enough that an exhaustive search over every assignment
// usually completes: 2–5 nodes, 1–3 tenants, 1–3 workloads of 1–2 replicas.
func Tiny() Size {
	return Size{MinNodes: 2, MaxNodes: 5, MaxTenants: 3, MaxWorkloads: 3, MaxReplicas: 2}
}

// chooser is the source of every random choice.
type chooser interface {
	// IntN returns a number in [0, n); n > 0.
	IntN(n int) int
}

// bytesSource draws choices from a byte string, for fuzzing: the fuzzer's
// mutations steer the choices. When the bytes run out every choice is 0.
type bytesSource struct {
	data []byte
	pos  int
}

// IntN implements chooser with one byte per choice (two when n > 256).
func (b *bytesSource) IntN(n int) int {
	if n <= 1 {
		return 0
	}
	v := 0
	for need := n - 1; need > 0; need >>= 8 {
		v <<= 8
		if b.pos < len(b.data) {
			v |= int(b.data[b.pos])
			b.pos++
		}
	}
	return v % n
}

// Random returns a small random problem for seed: a topology of physical
// hosts and VM nodes with random runtimes, capacities and failure domains
// (datacenter, rack, pdu, weather), tenants with random organizations,
// trust, dedication and floors, and workloads with random resources, data
// classes, spread and affinity, sometimes with a Policy.
func Random(seed int64, size Size) *v1.Set {
	return build(rand.New(rand.NewPCG(uint64(seed), 0x72756e67)), size)
}

// FromBytes is Random driven by a byte string instead of a seed, for
// fuzz targets: every choice consumes the next byte(s).
func FromBytes(data []byte, size Size) *v1.Set {
	return build(&bytesSource{data: data}, size)
}

// random is one generation run.
type random struct {
	c    chooser
	size Size
	set  *v1.Set
}

func build(c chooser, size Size) *v1.Set {
	r := &random{c: c, size: size, set: &v1.Set{}}
	tenants := r.tenants()
	r.topology(tenants)
	r.workloads(tenants)
	r.policy()
	return r.set
}

// between returns a number in [lo, hi].
func (r *random) between(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.c.IntN(hi-lo+1)
}

// chance reports true with probability pct/100.
func (r *random) chance(pct int) bool { return r.c.IntN(100) < pct }

// pick returns one of the options.
func pick[T any](r *random, options ...T) T { return options[r.c.IntN(len(options))] }

func typeMeta(kind string) v1.TypeMeta { return v1.TypeMeta{APIVersion: v1.APIVersion, Kind: kind} }

func qty(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

var tenantNames = []string{"acme", "biology", "geology", "bank", "agency", "anon"}

func (r *random) tenants() []string {
	n := r.between(1, min(r.size.MaxTenants, len(tenantNames)))
	start := r.c.IntN(len(tenantNames))
	var names []string
	for i := range n {
		name := tenantNames[(start+i)%len(tenantNames)]
		names = append(names, name)
		t := v1.Tenant{TypeMeta: typeMeta(v1.KindTenant), Metadata: v1.ObjectMeta{Name: name}}
		if !r.chance(40) { // else the organization defaults to the name
			t.Spec.Organization = pick(r, "state-university", "acme-corp", "bank")
		}
		t.Spec.Trust = pick(r, "", v1.TrustTrusted, v1.TrustUntrusted)
		t.Spec.Dedicated = r.chance(10)
		if r.chance(15) {
			t.Spec.Isolation.Minimum = pick(r, v1.TierContainer, v1.TierSandbox, v1.TierVM, v1.TierHost)
		}
		if r.chance(30) {
			t.Metadata.Labels = map[string]string{"level": pick(r, "gold", "silver")}
		}
		r.set.Tenants = append(r.set.Tenants, t)
	}
	return names
}

func (r *random) topology(tenants []string) {
	top := v1.Topology{TypeMeta: typeMeta(v1.KindTopology), Metadata: v1.ObjectMeta{Name: "random"}}
	var hosts []string
	n := r.between(r.size.MinNodes, r.size.MaxNodes)
	for i := range n {
		var node v1.Node
		if len(hosts) > 0 && r.chance(30) {
			node = v1.Node{
				Name: fmt.Sprintf("vm%d", i),
				Host: pick(r, hosts...),
				Capacity: v1.Resources{
					CPU:    qty(pick(r, "1", "2", "4")),
					Memory: qty(pick(r, "1Gi", "2Gi", "4Gi")),
				},
			}
			if r.chance(25) {
				node.Tenant = pick(r, tenants...)
			}
		} else {
			node = v1.Node{
				Name:    fmt.Sprintf("h%d", i),
				Domains: map[string]string{},
				Capacity: v1.Resources{
					CPU:    qty(pick(r, "1", "2", "4", "8")),
					Memory: qty(pick(r, "1Gi", "2Gi", "4Gi", "8Gi")),
				},
			}
			dc := pick(r, "dc1", "dc2", "dc3")
			domains := map[string]string{
				"datacenter": dc,
				"rack":       dc + "-r" + pick(r, "1", "2"),
				"pdu":        pick(r, "p1", "p2", "p3"),
				"weather":    pick(r, "atlantic", "pacific"),
			}
			for _, level := range []string{"datacenter", "rack", "pdu", "weather"} {
				if !r.chance(10) { // sometimes a node has no domain at a level
					node.Domains[level] = domains[level]
				}
			}
			hosts = append(hosts, node.Name)
		}
		if r.chance(20) {
			node.Capacity.PIDs = int64(pick(r, 100, 500))
		}
		if !r.chance(15) { // else the default runtimes
			for _, t := range []v1.Tier{v1.TierContainer, v1.TierSandbox, v1.TierVM, v1.TierHost} {
				pct := 70
				if t == v1.TierHost { // a whole host for one tenant is the operator's choice
					pct = 30
				}
				if r.chance(pct) {
					node.Runtimes = append(node.Runtimes, t)
				}
			}
			if len(node.Runtimes) == 0 {
				node.Runtimes = []v1.Tier{v1.TierContainer}
			}
		}
		top.Spec.Nodes = append(top.Spec.Nodes, node)
	}
	r.set.Topologies = append(r.set.Topologies, top)
}

func (r *random) workloads(tenants []string) {
	n := r.between(1, r.size.MaxWorkloads)
	names := make([]string, n)
	owner := make([]string, n)
	for i := range n {
		names[i], owner[i] = fmt.Sprintf("w%d", i), pick(r, tenants...)
	}
	for i := range n {
		replicas := r.between(1, r.size.MaxReplicas)
		w := v1.Workload{
			TypeMeta: typeMeta(v1.KindWorkload),
			Metadata: v1.ObjectMeta{Name: names[i], Tenant: owner[i], Labels: map[string]string{"app": pick(r, "a", "b")}},
			Spec: v1.WorkloadSpec{
				Image:    "registry.example/app:1",
				Replicas: &replicas,
				Resources: v1.Resources{
					CPU:    qty(pick(r, "100m", "250m", "500m", "1", "2")),
					Memory: qty(pick(r, "64Mi", "256Mi", "512Mi", "1Gi", "2Gi")),
				},
				DataClass: pick(r, "", v1.DataPublic, v1.DataInternal, v1.DataInternal, v1.DataConfidential, v1.DataRestricted),
				Dedicated: r.chance(8),
			},
		}
		if r.chance(20) {
			w.Spec.Resources.PIDs = int64(pick(r, 10, 50))
		}
		if r.chance(15) {
			w.Spec.Privilege = v1.PrivilegeElevated
		}
		if r.chance(10) {
			w.Spec.Isolation.Minimum = pick(r, v1.TierContainer, v1.TierSandbox, v1.TierVM, v1.TierHost)
		}
		for range pick(r, 0, 0, 1, 1, 2) {
			s := v1.Spread{
				Level:        pick(r, "datacenter", "rack", "pdu", "weather", "host"),
				MinDomains:   pick(r, 0, 0, 1, 2, 3),
				MaxPerDomain: pick(r, 0, 1, 2),
				Soft:         r.chance(30),
			}
			if s.MinDomains > replicas && !r.chance(20) { // mostly satisfiable
				s.MinDomains = replicas
			}
			if s.MinDomains == 0 && s.MaxPerDomain == 0 {
				s.MaxPerDomain = 1
			}
			w.Spec.Spread = append(w.Spec.Spread, s)
		}
		for range pick(r, 0, 0, 0, 1, 1, 2) {
			a := v1.Affinity{
				Op:    pick(r, "==", "!="),
				Level: pick(r, "host", "rack", "datacenter", "pdu"),
				Soft:  r.chance(30),
			}
			switch r.c.IntN(5) {
			case 0, 1: // a bare name: a workload of the same tenant, if any
				a.Workload = pick(r, names...)
			case 2: // TENANT/NAME: any workload
				j := r.c.IntN(n)
				a.Workload = owner[j] + "/" + names[j]
			case 3:
				a.Tenant = pick(r, tenants...)
			default:
				a.Label = "app=" + pick(r, "a", "b")
			}
			w.Spec.Affinity = append(w.Spec.Affinity, a)
		}
		r.set.Workloads = append(r.set.Workloads, w)
	}
}

// policyRules are operator rules Random may add; each compiles.
var policyRules = []v1.Rule{
	{Name: "bank-own-hardware", When: `victim.tenant.organization == "bank" && attacker.tenant.name != victim.tenant.name`, Require: v1.TierHost},
	{Name: "gold-sandbox", When: `"level" in attacker.tenant.labels && attacker.tenant.labels["level"] == "gold"`, Require: v1.TierSandbox},
	{Name: "replicas-apart", When: `attacker.workload.name == victim.workload.name && attacker.tenant.name == victim.tenant.name`, Require: v1.TierSandbox},
	{Name: "confidential-vm", When: `victim.dataClass == "confidential" && attacker.tenant.name != victim.tenant.name`, Require: v1.TierVM},
}

func (r *random) policy() {
	overhead, rules := r.chance(25), r.chance(20)
	if !overhead && !rules {
		return
	}
	p := v1.Policy{TypeMeta: typeMeta(v1.KindPolicy), Metadata: v1.ObjectMeta{Name: "site"}}
	if overhead {
		p.Spec.TierOverhead = map[v1.Tier]v1.Resources{}
		for _, t := range []v1.Tier{v1.TierContainer, v1.TierSandbox, v1.TierVM, v1.TierHost} {
			if r.chance(50) {
				p.Spec.TierOverhead[t] = v1.Resources{
					CPU:    qty(pick(r, "0", "50m", "200m")),
					Memory: qty(pick(r, "0", "32Mi", "128Mi", "512Mi")),
				}
			}
		}
	}
	if rules {
		first := r.c.IntN(len(policyRules))
		for i := range r.between(1, 2) { // distinct rules: names must be unique
			p.Spec.Rules = append(p.Spec.Rules, policyRules[(first+i)%len(policyRules)])
		}
	}
	r.set.Policies = append(r.set.Policies, p)
}
