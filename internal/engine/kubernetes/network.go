package kubernetes

// Tenant networks on Kubernetes (DESIGN §9, §14): NetworkPolicies stand for
// rung's nftables chains and Services for its name server. They are data
// built from the set, like the pods; the engine applies, prunes and puts
// them back like every other object rung makes.

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	v1 "rung.dev/rung/api/v1"
)

// Network object names and labels.
const (
	// LabelNamespaceName is set by the apiserver on every namespace to its
	// name and can't be changed: with rung's own labels it makes a tenant's
	// namespace unforgeable as a policy peer.
	LabelNamespaceName = "kubernetes.io/metadata.name"
	// allowPrefix+WORKLOAD opens a workload's allowTenants and published
	// ports; reachName lets a tenant's pods reach the ports others opened
	// to it; egressPrefix+WORKLOAD is spec.egress.
	allowPrefix  = "rung-allow-"
	reachName    = "rung-reach"
	egressPrefix = "rung-egress-"
	// publicSuffix names a workload's NodePort Service (published ports
	// only: a NodePort Service would publish every port it lists).
	publicSuffix = "-public"
	dnsNamespace = "kube-system"
)

// deniedEgress are never reachable, not even with spec.egress: link-local
// (169.254.169.254, the cloud metadata service, and its IPv6 forms).
var deniedEgress = map[string][]string{
	"0.0.0.0/0": {"169.254.0.0/16"},
	"::/0":      {"fe80::/10", "fd00:ec2::254/128"},
}

// NetworkObjects are the tenants' NetworkPolicies and the workloads'
// Services for set: per tenant namespace a default-deny policy (ingress
// and egress) that lets pods talk inside the namespace and ask the
// cluster's DNS; per workload its opened ports (allowTenants, published),
// its egress when the site consents; in each allowed tenant's namespace
// the egress to exactly those ports; a ClusterIP Service per workload with
// ports, and a NodePort Service for its published ones. Problems (a node
// port outside the cluster's range, egress without consent) leave the
// opening out and are returned: never more open than asked.
func NetworkObjects(set *v1.Set, opts Options) ([]runtime.Object, []string) {
	var out []runtime.Object
	var problems []string
	tenants := map[string]bool{}
	for _, t := range set.Tenants {
		tenants[t.Metadata.Name] = true
		out = append(out, IsolationPolicy(t.Metadata.Name))
	}
	lo, hi, err := v1.ParsePortRange(or(opts.NodePorts, v1.DefaultNodePorts))
	if err != nil {
		problems = append(problems, fmt.Sprintf("kubernetes: Options.NodePorts %q: %v: nothing is published", opts.NodePorts, err))
		lo, hi = 1, 0
	}
	// reach[X] are the egress rules X's pods need for the ports opened to X.
	reach := map[string][]networkingv1.NetworkPolicyEgressRule{}
	names := serviceNames(set)
	for i := range set.Workloads {
		w := &set.Workloads[i]
		tenant := w.Metadata.Tenant
		if !tenants[tenant] {
			continue
		}
		if len(w.Spec.Ports) > 0 {
			svc, pub, bad := Services(w, names, lo, hi)
			problems = append(problems, bad...)
			out = append(out, svc)
			if pub != nil {
				out = append(out, pub)
			}
		}
		if p := AllowPolicy(w, lo, hi); p != nil {
			out = append(out, p)
		}
		for _, x := range openedTo(w) {
			if x.tenant == tenant || !tenants[x.tenant] {
				continue // a tenant's own pods reach it anyway; an unknown tenant has no namespace
			}
			reach[x.tenant] = append(reach[x.tenant], networkingv1.NetworkPolicyEgressRule{
				To:    []networkingv1.NetworkPolicyPeer{workloadPeer(tenant, w.Metadata.Name)},
				Ports: x.ports,
			})
		}
		if w.Spec.Egress {
			if !egressConsent(set, tenant) {
				problems = append(problems, fmt.Sprintf("%s/%s: spec.egress without the site's consent (Policy spec.network.egressTenants): no egress", tenant, w.Metadata.Name))
				continue
			}
			out = append(out, EgressPolicy(w))
		}
	}
	for _, t := range slices.Sorted(maps.Keys(reach)) {
		out = append(out, &networkingv1.NetworkPolicy{
			TypeMeta:   policyType,
			ObjectMeta: metav1.ObjectMeta{Name: reachName, Namespace: Namespace(t), Labels: managed(t, nil)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedBy, LabelTenantOf: t}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      reach[t],
			},
		})
	}
	return out, problems
}

var policyType = metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}

// IsolationPolicy is a tenant namespace's default deny: every pod there
// takes traffic from its own namespace only, and sends only to its own
// namespace and to DNS (port 53) in kube-system. Other policies only add.
func IsolationPolicy(tenant string) *networkingv1.NetworkPolicy {
	same := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   policyType,
		ObjectMeta: metav1.ObjectMeta{Name: isolationName, Namespace: Namespace(tenant), Labels: managed(tenant, nil)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: same}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: same},
				{
					To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
						MatchLabels: map[string]string{LabelNamespaceName: dnsNamespace},
					}}},
					Ports: []networkingv1.NetworkPolicyPort{policyPort(corev1.ProtocolUDP, 53), policyPort(corev1.ProtocolTCP, 53)},
				},
			},
		},
	}
}

// AllowPolicy opens w's ports beyond its namespace: a published port to
// every source (node ports take traffic from outside the cluster), an
// allowTenants port to exactly those tenants' pods. nil when w opens
// nothing.
func AllowPolicy(w *v1.Workload, lo, hi int) *networkingv1.NetworkPolicy {
	var rules []networkingv1.NetworkPolicyIngressRule
	for _, p := range w.Spec.Ports {
		port := []networkingv1.NetworkPolicyPort{policyPort(protocol(p.Protocol), p.Port)}
		if p.Publish && nodePortOK(p, lo, hi) {
			rules = append(rules, networkingv1.NetworkPolicyIngressRule{Ports: port})
			continue
		}
		var from []networkingv1.NetworkPolicyPeer
		for _, t := range allowed(p, w.Metadata.Tenant) {
			from = append(from, tenantPeer(t))
		}
		if len(from) > 0 {
			rules = append(rules, networkingv1.NetworkPolicyIngressRule{From: from, Ports: port})
		}
	}
	if len(rules) == 0 {
		return nil
	}
	return workloadPolicy(w, allowPrefix, networkingv1.PolicyTypeIngress, rules, nil)
}

// workloadPolicy is a policy named PREFIX+WORKLOAD on exactly w's pods.
func workloadPolicy(w *v1.Workload, prefix string, typ networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, out []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	tenant := w.Metadata.Tenant
	return &networkingv1.NetworkPolicy{
		TypeMeta:   policyType,
		ObjectMeta: metav1.ObjectMeta{Name: prefix + w.Metadata.Name, Namespace: Namespace(tenant), Labels: managed(tenant, map[string]string{LabelWorkload: w.Metadata.Name})},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: workloadLabels(tenant, w.Metadata.Name)},
			PolicyTypes: []networkingv1.PolicyType{typ},
			Ingress:     in,
			Egress:      out,
		},
	}
}

// EgressPolicy lets w's pods reach any address but link-local ones.
func EgressPolicy(w *v1.Workload) *networkingv1.NetworkPolicy {
	var to []networkingv1.NetworkPolicyPeer
	for _, cidr := range []string{"0.0.0.0/0", "::/0"} {
		to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: deniedEgress[cidr]}})
	}
	return workloadPolicy(w, egressPrefix, networkingv1.PolicyTypeEgress, nil, []networkingv1.NetworkPolicyEgressRule{{To: to}})
}

// Services are w's ClusterIP Service (every port, for discovery as
// WORKLOAD.rung-TENANT.svc) and, when it publishes ports, a NodePort
// Service of those only. Both select exactly w's pods. A published port
// whose nodePort is outside the cluster's range [lo, hi] stays
// unpublished, and is named in problems.
func Services(w *v1.Workload, names map[string]svcName, lo, hi int) (cluster, public *corev1.Service, problems []string) {
	tenant, name := w.Metadata.Tenant, w.Metadata.Name
	n := names[tenant+"/"+name]
	sel := workloadLabels(tenant, name)
	meta := func(svc string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: svc, Namespace: Namespace(tenant), Labels: managed(tenant, map[string]string{LabelWorkload: name})}
	}
	cluster = &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(n.cluster),
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: sel},
	}
	var pub []corev1.ServicePort
	used := map[string]bool{}
	for _, p := range w.Spec.Ports {
		sp := corev1.ServicePort{Name: portName(p, used), Protocol: protocol(p.Protocol), Port: int32(p.Port), TargetPort: intstr.FromInt32(int32(p.Port))}
		cluster.Spec.Ports = append(cluster.Spec.Ports, sp)
		if !p.Publish {
			continue
		}
		if !nodePortOK(p, lo, hi) {
			problems = append(problems, fmt.Sprintf("%s/%s: port %d: nodePort %d is outside the cluster's node-port range %d-%d (Options.NodePorts, the apiserver's --service-node-port-range): not published", tenant, name, p.Port, p.NodePort, lo, hi))
			continue
		}
		if n.public == "" {
			problems = append(problems, fmt.Sprintf("%s/%s: no free Service name for its published ports: not published", tenant, name))
			continue
		}
		sp.NodePort = int32(p.NodePort) // 0: the apiserver allocates one from its range
		pub = append(pub, sp)
	}
	if len(pub) > 0 {
		public = &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: meta(n.public),
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: sel, Ports: pub},
		}
	}
	return cluster, public, problems
}

// svcName are a workload's Service names.
type svcName struct{ cluster, public string }

// serviceNames gives every workload with ports Service names unique in
// its namespace: WORKLOAD (a DNS-1035 label: a name starting with a digit
// gets "w-"), and WORKLOAD-public; a name another workload's Service
// already takes gets a hash of the workload's name instead.
func serviceNames(set *v1.Set) map[string]svcName {
	out := map[string]svcName{}
	taken := map[string]bool{}
	type want struct{ key, tenant, name string }
	var ws []want
	for _, w := range set.Workloads {
		if len(w.Spec.Ports) == 0 {
			continue
		}
		ws = append(ws, want{w.Metadata.Tenant + "/" + w.Metadata.Name, w.Metadata.Tenant, w.Metadata.Name})
	}
	slices.SortFunc(ws, func(a, b want) int { return strings.Compare(a.key, b.key) })
	pick := func(tenant, base, key, kind string) string {
		for _, c := range []string{base, hashed(key + " " + kind)} {
			if len(validation.IsDNS1035Label(c)) == 0 && !taken[tenant+"/"+c] {
				taken[tenant+"/"+c] = true
				return c
			}
		}
		return ""
	}
	// Plain names first, so that a workload's discovery name is its own
	// whenever it is a valid Service name.
	for _, w := range ws {
		base := w.name
		if base != "" && (base[0] < 'a' || base[0] > 'z') {
			base = "w-" + base
		}
		out[w.key] = svcName{cluster: pick(w.tenant, base, w.key, "cluster")}
	}
	for _, w := range ws {
		n := out[w.key]
		n.public = pick(w.tenant, trim(w.name, 63-len(publicSuffix))+publicSuffix, w.key, "public")
		out[w.key] = n
	}
	return out
}

func hashed(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("rung-svc-%08x", h.Sum32())
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// portName is a Service port's name, unique in the Service: the port's own
// name, else PROTO-PORT.
func portName(p v1.Port, used map[string]bool) string {
	for _, c := range []string{p.Name, strings.ToLower(string(protocol(p.Protocol))) + "-" + strconv.Itoa(p.Port)} {
		if c != "" && !used[c] {
			used[c] = true
			return c
		}
	}
	n := fmt.Sprintf("port-%d-%s", p.Port, strings.ToLower(string(protocol(p.Protocol))))
	used[n] = true
	return n
}

func nodePortOK(p v1.Port, lo, hi int) bool {
	return p.NodePort == 0 && lo <= hi || p.NodePort >= lo && p.NodePort <= hi
}

// opened is what one workload opens to one other tenant.
type opened struct {
	tenant string
	ports  []networkingv1.NetworkPolicyPort
}

// openedTo lists, per tenant named in w's allowTenants, the ports opened
// to it, in the order of first mention.
func openedTo(w *v1.Workload) []opened {
	var out []opened
	at := map[string]int{}
	for _, p := range w.Spec.Ports {
		for _, t := range allowed(p, w.Metadata.Tenant) {
			i, ok := at[t]
			if !ok {
				i = len(out)
				at[t] = i
				out = append(out, opened{tenant: t})
			}
			out[i].ports = append(out[i].ports, policyPort(protocol(p.Protocol), p.Port))
		}
	}
	return out
}

// allowed are p's allowTenants other than its own tenant, sorted, once each.
func allowed(p v1.Port, own string) []string {
	var out []string
	for _, t := range p.AllowTenants {
		if t != own && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// tenantPeer is tenant's rung pods in its namespace, selected by labels
// rung sets on what it owns and by the namespace name the apiserver sets:
// a namespace someone else labels rung.dev/tenant=T is not T's.
func tenantPeer(tenant string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{
			LabelNamespaceName: Namespace(tenant), LabelManagedBy: ManagedBy, LabelTenantOf: tenant,
		}},
		PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelManagedBy: ManagedBy, LabelTenantOf: tenant}},
	}
}

// workloadPeer is one workload's pods, from another namespace.
func workloadPeer(tenant, workload string) networkingv1.NetworkPolicyPeer {
	p := tenantPeer(tenant)
	p.PodSelector.MatchLabels[LabelWorkload] = workload
	return p
}

// workloadLabels select exactly a workload's pods (the labels Pod sets).
func workloadLabels(tenant, workload string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelTenantOf: tenant, LabelWorkload: workload}
}

func policyPort(proto corev1.Protocol, port int) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(int32(port))
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func protocol(p v1.Protocol) corev1.Protocol {
	if p == v1.ProtocolUDP {
		return corev1.ProtocolUDP
	}
	return corev1.ProtocolTCP
}

// egressConsent is the site Policy's consent (validation checks it when a
// workload is applied; checked again here so that no path opens egress
// without it).
func egressConsent(set *v1.Set, tenant string) bool {
	for _, p := range set.Policies {
		if slices.Contains(p.Spec.Network.EgressTenants, tenant) || slices.Contains(p.Spec.Network.EgressTenants, "*") {
			return true
		}
	}
	return false
}
