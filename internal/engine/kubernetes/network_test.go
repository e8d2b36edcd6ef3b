package kubernetes_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "rung.dev/rung/api/v1"
	kube "rung.dev/rung/internal/engine/kubernetes"
)

// policy is a NetworkPolicy as the tests compare it: who, which
// directions, and each rule's peers and ports as text.
type policy struct {
	Pods    string
	Types   []string
	Ingress []rule
	Egress  []rule
}

type rule struct {
	Peers []string
	Ports []string
}

func selector(s *metav1.LabelSelector) string {
	if s == nil {
		return "-"
	}
	return "{" + metav1.FormatLabelSelector(s) + "}"
}

func peers(ps []networkingv1.NetworkPolicyPeer) []string {
	var out []string
	for _, p := range ps {
		switch {
		case p.IPBlock != nil:
			out = append(out, fmt.Sprintf("ip %s except %v", p.IPBlock.CIDR, p.IPBlock.Except))
		default:
			out = append(out, "ns "+selector(p.NamespaceSelector)+" pods "+selector(p.PodSelector))
		}
	}
	return out
}

func ports(ps []networkingv1.NetworkPolicyPort) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s/%s", p.Port.String(), *p.Protocol))
	}
	return out
}

func summarize(np *networkingv1.NetworkPolicy) policy {
	p := policy{Pods: selector(&np.Spec.PodSelector)}
	for _, t := range np.Spec.PolicyTypes {
		p.Types = append(p.Types, string(t))
	}
	for _, r := range np.Spec.Ingress {
		p.Ingress = append(p.Ingress, rule{peers(r.From), ports(r.Ports)})
	}
	for _, r := range np.Spec.Egress {
		p.Egress = append(p.Egress, rule{peers(r.To), ports(r.Ports)})
	}
	return p
}

// service is a Service as the tests compare it.
type service struct {
	Type     string
	Selector string
	Ports    []string
}

func summarizeService(s *corev1.Service, withNodePort bool) service {
	out := service{Type: string(s.Spec.Type), Selector: selector(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})}
	for _, p := range s.Spec.Ports {
		port := fmt.Sprintf("%s %d/%s->%s", p.Name, p.Port, p.Protocol, p.TargetPort.String())
		if withNodePort {
			port += fmt.Sprintf(" node %d", p.NodePort)
		}
		out.Ports = append(out.Ports, port)
	}
	return out
}

// byName indexes objects as NAMESPACE/KIND/NAME.
func byName(objs []runtime.Object) map[string]runtime.Object {
	out := map[string]runtime.Object{}
	for _, o := range objs {
		m := o.(metav1.Object)
		kind := o.GetObjectKind().GroupVersionKind().Kind
		out[m.GetNamespace()+"/"+kind+"/"+m.GetName()] = o
	}
	return out
}

func summaries(objs []runtime.Object) (map[string]policy, map[string]service) {
	pols, svcs := map[string]policy{}, map[string]service{}
	for k, o := range byName(objs) {
		switch o := o.(type) {
		case *networkingv1.NetworkPolicy:
			pols[k] = summarize(o)
		case *corev1.Service:
			svcs[k] = summarizeService(o, true)
		}
	}
	return pols, svcs
}

func tenant(name string) v1.Tenant {
	return v1.Tenant{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindTenant}, Metadata: v1.ObjectMeta{Name: name}}
}

func workload(tenant, name string, egress bool, ports ...v1.Port) v1.Workload {
	return v1.Workload{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindWorkload}, Metadata: v1.ObjectMeta{Name: name, Tenant: tenant},
		Spec: v1.WorkloadSpec{Image: "registry.example/app:1", Ports: ports, Egress: egress}}
}

func consent(tenants ...string) v1.Policy {
	return v1.Policy{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindPolicy}, Metadata: v1.ObjectMeta{Name: "site"},
		Spec: v1.PolicySpec{Network: v1.PolicyNetwork{EgressTenants: tenants}}}
}

// Selectors as FormatLabelSelector prints them (keys sorted).
const (
	mb       = "app.kubernetes.io/managed-by=rung"
	allPods  = "{<none>}"
	dnsPeer  = "ns {kubernetes.io/metadata.name=kube-system} pods -"
	samePeer = "ns - pods " + allPods
)

func nsOf(t string) string {
	return "{" + mb + ",kubernetes.io/metadata.name=rung-" + t + ",rung.dev/tenant=" + t + "}"
}

func podsOf(t string) string { return "{" + mb + ",rung.dev/tenant=" + t + "}" }

func podsOfWorkload(t, w string) string {
	return "{" + mb + ",rung.dev/tenant=" + t + ",rung.dev/workload=" + w + "}"
}

func isolation() policy {
	return policy{Pods: allPods, Types: []string{"Ingress", "Egress"},
		Ingress: []rule{{Peers: []string{samePeer}}},
		Egress:  []rule{{Peers: []string{samePeer}}, {Peers: []string{dnsPeer}, Ports: []string{"53/UDP", "53/TCP"}}},
	}
}

func TestNetworkObjects(t *testing.T) {
	egressAll := policy{Types: []string{"Egress"}, Egress: []rule{{Peers: []string{
		"ip 0.0.0.0/0 except [169.254.0.0/16]", "ip ::/0 except [fe80::/10 fd00:ec2::254/128]"}}}}
	withPods := func(p policy, pods string) policy { p.Pods = pods; return p }
	for _, tc := range []struct {
		name      string
		set       v1.Set
		opts      kube.Options
		policies  map[string]policy
		services  map[string]service
		problemIn []string
	}{{
		name: "tenants without ports: default deny each",
		set:  v1.Set{Tenants: []v1.Tenant{tenant("a"), tenant("b")}, Workloads: []v1.Workload{workload("a", "web", false)}},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate": isolation(),
			"rung-b/NetworkPolicy/rung-isolate": isolation(),
		},
		services: map[string]service{},
	}, {
		name: "allowTenants opens exactly the port to exactly those tenants; published from anywhere",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a"), tenant("b"), tenant("c")}, Workloads: []v1.Workload{
			workload("a", "web", false,
				v1.Port{Name: "http", Port: 8080},
				v1.Port{Port: 9090, AllowTenants: []string{"b", "a", "ghost"}},
				v1.Port{Port: 5353, Protocol: v1.ProtocolUDP, AllowTenants: []string{"b"}},
				v1.Port{Port: 8443, Publish: true},
				v1.Port{Port: 8444, Publish: true, NodePort: 30444}),
		}},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate": isolation(),
			"rung-b/NetworkPolicy/rung-isolate": isolation(),
			"rung-c/NetworkPolicy/rung-isolate": isolation(),
			"rung-a/NetworkPolicy/rung-allow-web": {Pods: podsOfWorkload("a", "web"), Types: []string{"Ingress"}, Ingress: []rule{
				{Peers: []string{"ns " + nsOf("b") + " pods " + podsOf("b"), "ns " + nsOf("ghost") + " pods " + podsOf("ghost")}, Ports: []string{"9090/TCP"}},
				{Peers: []string{"ns " + nsOf("b") + " pods " + podsOf("b")}, Ports: []string{"5353/UDP"}},
				{Ports: []string{"8443/TCP"}},
				{Ports: []string{"8444/TCP"}},
			}},
			// b's pods may send to a's web on the ports opened to b; c gets nothing.
			"rung-b/NetworkPolicy/rung-reach": {Pods: podsOf("b"), Types: []string{"Egress"}, Egress: []rule{
				{Peers: []string{"ns " + nsOf("a") + " pods " + podsOfWorkload("a", "web")}, Ports: []string{"9090/TCP", "5353/UDP"}},
			}},
		},
		services: map[string]service{
			"rung-a/Service/web": {Type: "ClusterIP", Selector: podsOfWorkload("a", "web"), Ports: []string{
				"http 8080/TCP->8080 node 0", "tcp-9090 9090/TCP->9090 node 0", "udp-5353 5353/UDP->5353 node 0",
				"tcp-8443 8443/TCP->8443 node 0", "tcp-8444 8444/TCP->8444 node 0"}},
			"rung-a/Service/web-public": {Type: "NodePort", Selector: podsOfWorkload("a", "web"), Ports: []string{
				"tcp-8443 8443/TCP->8443 node 0", "tcp-8444 8444/TCP->8444 node 30444"}},
		},
	}, {
		name: "egress with the site's consent, link-local never",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a")}, Policies: []v1.Policy{consent("a")},
			Workloads: []v1.Workload{workload("a", "fetch", true)}},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate":      isolation(),
			"rung-a/NetworkPolicy/rung-egress-fetch": withPods(egressAll, podsOfWorkload("a", "fetch")),
		},
		services: map[string]service{},
	}, {
		name: "egress consent for every tenant",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a")}, Policies: []v1.Policy{consent("*")},
			Workloads: []v1.Workload{workload("a", "fetch", true)}},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate":      isolation(),
			"rung-a/NetworkPolicy/rung-egress-fetch": withPods(egressAll, podsOfWorkload("a", "fetch")),
		},
		services: map[string]service{},
	}, {
		name: "egress without consent stays closed",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a")}, Policies: []v1.Policy{consent("b")},
			Workloads: []v1.Workload{workload("a", "fetch", true)}},
		policies:  map[string]policy{"rung-a/NetworkPolicy/rung-isolate": isolation()},
		services:  map[string]service{},
		problemIn: []string{"a/fetch: spec.egress without the site's consent"},
	}, {
		name: "a nodePort outside the cluster's range is not published",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a")}, Workloads: []v1.Workload{
			workload("a", "web", false, v1.Port{Port: 8443, Publish: true, NodePort: 31000}, v1.Port{Port: 8444, Publish: true})}},
		opts: kube.Options{NodePorts: "32000-32100"},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate":   isolation(),
			"rung-a/NetworkPolicy/rung-allow-web": {Pods: podsOfWorkload("a", "web"), Types: []string{"Ingress"}, Ingress: []rule{{Ports: []string{"8444/TCP"}}}},
		},
		services: map[string]service{
			"rung-a/Service/web":        {Type: "ClusterIP", Selector: podsOfWorkload("a", "web"), Ports: []string{"tcp-8443 8443/TCP->8443 node 0", "tcp-8444 8444/TCP->8444 node 0"}},
			"rung-a/Service/web-public": {Type: "NodePort", Selector: podsOfWorkload("a", "web"), Ports: []string{"tcp-8444 8444/TCP->8444 node 0"}},
		},
		problemIn: []string{"a/web: port 8443: nodePort 31000 is outside the cluster's node-port range 32000-32100"},
	}, {
		name: "Service names are valid and unique in the namespace",
		set: v1.Set{Tenants: []v1.Tenant{tenant("a")}, Workloads: []v1.Workload{
			workload("a", "1st", false, v1.Port{Port: 8080}),
			workload("a", "x", false, v1.Port{Port: 8080, Publish: true}),
			workload("a", "x-public", false, v1.Port{Port: 8080}),
		}},
		policies: map[string]policy{
			"rung-a/NetworkPolicy/rung-isolate": isolation(),
			"rung-a/NetworkPolicy/rung-allow-x": {Pods: podsOfWorkload("a", "x"), Types: []string{"Ingress"}, Ingress: []rule{{Ports: []string{"8080/TCP"}}}},
		},
		services: map[string]service{
			"rung-a/Service/w-1st":                  {Type: "ClusterIP", Selector: podsOfWorkload("a", "1st"), Ports: []string{"tcp-8080 8080/TCP->8080 node 0"}},
			"rung-a/Service/x":                      {Type: "ClusterIP", Selector: podsOfWorkload("a", "x"), Ports: []string{"tcp-8080 8080/TCP->8080 node 0"}},
			"rung-a/Service/x-public":               {Type: "ClusterIP", Selector: podsOfWorkload("a", "x-public"), Ports: []string{"tcp-8080 8080/TCP->8080 node 0"}},
			"rung-a/Service/" + publicHashed("a/x"): {Type: "NodePort", Selector: podsOfWorkload("a", "x"), Ports: []string{"tcp-8080 8080/TCP->8080 node 0"}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs, problems := kube.NetworkObjects(&tc.set, tc.opts)
			pols, svcs := summaries(objs)
			if d := cmp.Diff(tc.policies, pols); d != "" {
				t.Errorf("policies (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.services, svcs); d != "" {
				t.Errorf("services (-want +got):\n%s", d)
			}
			if len(problems) != len(tc.problemIn) {
				t.Fatalf("problems %q, want %d", problems, len(tc.problemIn))
			}
			for i, p := range tc.problemIn {
				if !strings.Contains(problems[i], p) {
					t.Errorf("problem %q, want it to say %q", problems[i], p)
				}
			}
		})
	}
}

// publicHashed finds the hashed name the NodePort Service of a workload
// gets when WORKLOAD-public is taken (whatever the hash is, it must be
// a valid, distinct name: the test checks it through the map key).
func publicHashed(key string) string {
	objs, _ := kube.NetworkObjects(&v1.Set{Tenants: []v1.Tenant{tenant("a")}, Workloads: []v1.Workload{
		workload("a", "x", false, v1.Port{Port: 8080, Publish: true}),
		workload("a", "x-public", false, v1.Port{Port: 8080}),
	}}, kube.Options{})
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok && s.Spec.Type == corev1.ServiceTypeNodePort && strings.HasPrefix(s.Name, "rung-svc-") {
			return s.Name
		}
	}
	return "no hashed name for " + key
}

// TestServiceNamesDNS1035: every Service name NetworkObjects makes is a
// DNS-1035 label the apiserver accepts, whatever the workload's name.
func TestServiceNamesDNS1035(t *testing.T) {
	long := strings.Repeat("a", 63)
	set := v1.Set{Tenants: []v1.Tenant{tenant("a")}}
	for _, n := range []string{"9lives", long, "web", "0"} {
		set.Workloads = append(set.Workloads, workload("a", n, false, v1.Port{Port: 8080, Publish: true}))
	}
	objs, problems := kube.NetworkObjects(&set, kube.Options{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	var names []string
	for _, o := range objs {
		if s, ok := o.(*corev1.Service); ok {
			names = append(names, s.Name)
			if len(s.Name) > 63 || s.Name[0] < 'a' || s.Name[0] > 'z' || strings.HasSuffix(s.Name, "-") {
				t.Errorf("Service name %q is not a DNS-1035 label", s.Name)
			}
		}
	}
	slices.Sort(names)
	if len(slices.Compact(slices.Clone(names))) != 8 {
		t.Errorf("Service names %v: want 8 distinct", names)
	}
}
