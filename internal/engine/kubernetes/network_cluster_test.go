package kubernetes_test

// Networks and volumes on the real apiserver (subtests of TestCluster).
// No CNI or kubelet runs: the policies are checked as the cluster holds
// them, not by packets (docs/kubernetes.md says so).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "rung.dev/rung/api/v1"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/engine/kubernetes/kubetest"
	"rung.dev/rung/internal/scheduler"
)

func oneNode(name string) v1.Topology {
	return v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: name, Domains: map[string]string{"rack": "r-" + name},
		Capacity: v1.Resources{CPU: resource.NewQuantity(8, resource.DecimalSI), Memory: resource.NewQuantity(16<<30, resource.BinarySI)}}}}}
}

// join merges one-workload sets (oneWorkload) into one.
func join(sets ...*v1.Set) *v1.Set {
	out := &v1.Set{}
	seen := map[string]bool{}
	for _, s := range sets {
		for _, t := range s.Tenants {
			if !seen[t.Metadata.Name] {
				seen[t.Metadata.Name] = true
				out.Tenants = append(out.Tenants, t)
			}
		}
		out.Workloads = append(out.Workloads, s.Workloads...)
	}
	return out
}

// replan plans set on cl and applies it.
func replan(t *testing.T, e *kube.Engine, set *v1.Set, cl kube.Cluster) *scheduler.Result {
	t.Helper()
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyUntil(t, e, set, res)
	return res
}

// livePolicies reads ns's NetworkPolicies back, summarized.
func livePolicies(t *testing.T, c *kubetest.Cluster, ns ...string) map[string]policy {
	t.Helper()
	out := map[string]policy{}
	for _, n := range ns {
		l, err := c.Client.NetworkingV1().NetworkPolicies(n).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			if l.Items[i].DeletionTimestamp == nil {
				out[n+"/NetworkPolicy/"+l.Items[i].Name] = summarize(&l.Items[i])
			}
		}
	}
	return out
}

// testNetwork: a tenant's ports become NetworkPolicies and Services the
// cluster holds as rung built them: default deny per namespace, 9090
// opened to nb only (and nb's egress to exactly it), published ports on
// NodePorts from the cluster's range, egress with consent; drift is put
// back; removing the workload removes them.
func testNetwork(t *testing.T, c *kubetest.Cluster) {
	log := &auditLog{}
	e := engineFor(t, c, kube.Options{}, log)
	// A node per tenant: tenants of other organizations share a node only
	// in vms (rule 6), which these nodes don't run.
	for _, n := range []string{"net-1", "net-2", "net-3"} {
		addNodes(t, c.Client, oneNode(n))
	}
	web := oneWorkload("na", "web", 1)
	web.Workloads[0].Spec.Ports = []v1.Port{
		{Name: "http", Port: 8080},
		{Port: 9090, AllowTenants: []string{"nb"}},
		{Port: 8443, Publish: true},
		{Port: 8444, Publish: true, NodePort: 30444},
	}
	fetch := oneWorkload("na", "fetch", 1)
	fetch.Workloads[0].Spec.Egress = true
	set := join(web, fetch, oneWorkload("nb", "client", 1), oneWorkload("nc", "other", 1))
	set.Policies = []v1.Policy{consent("na")}
	cl := waitCluster(t, e, 3)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil || len(res.Placements) != 4 {
		t.Fatalf("plan: %v, %+v", err, res)
	}
	applyUntil(t, e, set, res)

	wantPolicies := map[string]policy{
		"rung-na/NetworkPolicy/rung-isolate": isolation(),
		"rung-nb/NetworkPolicy/rung-isolate": isolation(),
		"rung-nc/NetworkPolicy/rung-isolate": isolation(),
		"rung-na/NetworkPolicy/rung-allow-web": {Pods: podsOfWorkload("na", "web"), Types: []string{"Ingress"}, Ingress: []rule{
			{Peers: []string{"ns " + nsOf("nb") + " pods " + podsOf("nb")}, Ports: []string{"9090/TCP"}},
			{Ports: []string{"8443/TCP"}},
			{Ports: []string{"8444/TCP"}},
		}},
		"rung-nb/NetworkPolicy/rung-reach": {Pods: podsOf("nb"), Types: []string{"Egress"}, Egress: []rule{
			{Peers: []string{"ns " + nsOf("na") + " pods " + podsOfWorkload("na", "web")}, Ports: []string{"9090/TCP"}},
		}},
		"rung-na/NetworkPolicy/rung-egress-fetch": {Pods: podsOfWorkload("na", "fetch"), Types: []string{"Egress"}, Egress: []rule{{Peers: []string{
			"ip 0.0.0.0/0 except [169.254.0.0/16]", "ip ::/0 except [fe80::/10 fd00:ec2::254/128]"}}}},
	}
	if d := cmp.Diff(wantPolicies, livePolicies(t, c, "rung-na", "rung-nb", "rung-nc")); d != "" {
		t.Errorf("policies in the cluster (-want +got):\n%s", d)
	}

	// The namespaces carry the labels the peers select on.
	ctx := context.Background()
	for _, tn := range []string{"na", "nb", "nc"} {
		n, err := c.Client.CoreV1().Namespaces().Get(ctx, kube.Namespace(tn), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{kube.LabelNamespaceName: kube.Namespace(tn), kube.LabelTenantOf: tn, kube.LabelManagedBy: kube.ManagedBy} {
			if n.Labels[k] != v {
				t.Errorf("namespace %s: label %s=%q, want %q", n.Name, k, n.Labels[k], v)
			}
		}
	}

	// Services: discovery on every port, NodePorts from the cluster's
	// range for the published ones only, each selecting exactly web's pods.
	svc, err := c.Client.CoreV1().Services("rung-na").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(service{Type: "ClusterIP", Selector: podsOfWorkload("na", "web"), Ports: []string{
		"http 8080/TCP->8080", "tcp-9090 9090/TCP->9090", "tcp-8443 8443/TCP->8443", "tcp-8444 8444/TCP->8444"}}, summarizeService(svc, false)); d != "" {
		t.Errorf("Service web (-want +got):\n%s", d)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("Service web has no cluster IP: %q", svc.Spec.ClusterIP)
	}
	pub, err := c.Client.CoreV1().Services("rung-na").Get(ctx, "web-public", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(service{Type: "NodePort", Selector: podsOfWorkload("na", "web"), Ports: []string{
		"tcp-8443 8443/TCP->8443", "tcp-8444 8444/TCP->8444"}}, summarizeService(pub, false)); d != "" {
		t.Errorf("Service web-public (-want +got):\n%s", d)
	}
	if np := pub.Spec.Ports[0].NodePort; np < 30000 || np > 32767 {
		t.Errorf("8443's node port %d, want one the apiserver allocates from 30000-32767", np)
	}
	if np := pub.Spec.Ports[1].NodePort; np != 30444 {
		t.Errorf("8444's node port %d, want the asked 30444", np)
	}
	selected, err := c.Client.CoreV1().Pods("rung-na").List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(selected.Items) != 1 || selected.Items[0].Labels[kube.LabelWorkload] != "web" {
		t.Errorf("web's selector picks %d pods, want web's 1", len(selected.Items))
	}
	if _, err := c.Client.CoreV1().Services("rung-na").Get(ctx, "fetch", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service for fetch (no ports): %v, want none", err)
	}

	// Drift: a Service deleted, a policy's rule removed, behind rung's back.
	if err := c.Client.CoreV1().Services("rung-na").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	allow, err := c.Client.NetworkingV1().NetworkPolicies("rung-na").Get(ctx, "rung-allow-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	allow.Spec.Ingress[0].From = nil // open 9090 to everyone
	if _, err := c.Client.NetworkingV1().NetworkPolicies("rung-na").Update(ctx, allow, metav1.UpdateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		if _, err := c.Client.CoreV1().Services("rung-na").Get(ctx, "web", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("Service web not put back: %w", err)
		}
		if d := cmp.Diff(wantPolicies, livePolicies(t, c, "rung-na", "rung-nb", "rung-nc")); d != "" {
			return fmt.Errorf("policies not put back (-want +got):\n%s", d)
		}
		if !log.has("drift", "Service/rung-na/web") || !log.has("drift", "NetworkPolicy/rung-na/rung-allow-web") {
			return errors.New("drift not audited yet")
		}
		return nil
	})

	// The workload goes: its Services and policies go with it.
	set.Workloads = set.Workloads[1:]
	res = replan(t, e, set, cl)
	poll(t, func() error {
		for _, name := range []string{"web", "web-public"} {
			if s, err := c.Client.CoreV1().Services("rung-na").Get(ctx, name, metav1.GetOptions{}); err == nil && s.DeletionTimestamp == nil {
				return fmt.Errorf("Service %s still there", name)
			}
		}
		got := livePolicies(t, c, "rung-na", "rung-nb", "rung-nc")
		for _, k := range []string{"rung-na/NetworkPolicy/rung-allow-web", "rung-nb/NetworkPolicy/rung-reach"} {
			if _, ok := got[k]; ok {
				return fmt.Errorf("%s still there", k)
			}
		}
		if _, ok := got["rung-na/NetworkPolicy/rung-egress-fetch"]; !ok {
			return errors.New("fetch's egress policy went with web's")
		}
		return nil
	})
}

// testVolumes: a Volume mounted per replica becomes a claim per instance
// of the WaitForFirstConsumer class, selected on the node its pod is
// pinned to, mounted at the path; an Immediate default class is refused
// until a WaitForFirstConsumer one is the default; claims stay when the
// workload goes and go with the Volume; drift on a claim is put back.
func testVolumes(t *testing.T, c *kubetest.Cluster) {
	ctx := context.Background()
	wffc, immediate := storagev1.VolumeBindingWaitForFirstConsumer, storagev1.VolumeBindingImmediate
	for _, sc := range []storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "rung-test-immediate", Annotations: map[string]string{kube.AnnDefaultClass: "true"}}, Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &immediate},
		{ObjectMeta: metav1.ObjectMeta{Name: "rung-test-local"}, Provisioner: "rancher.io/local-path", VolumeBindingMode: &wffc},
	} {
		if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, &sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
		})
	}
	log := &auditLog{}
	e := engineFor(t, c, kube.Options{}, log)
	addNodes(t, c.Client, oneNode("vol-1"))
	addNodes(t, c.Client, oneNode("vol-2"))
	db := oneWorkload("vol", "db", 2)
	db.Workloads[0].Spec.Volumes = []v1.VolumeMount{{Name: "pgdata", MountPath: "/var/lib/pg", PerReplica: true}}
	db.Workloads[0].Spec.Spread = []v1.Spread{{Level: "rack", MaxPerDomain: 1}}
	set := join(db, oneWorkload("vol", "web", 1))
	set.Volumes = []v1.Volume{volume("vol", "pgdata", "1Gi", "00112233aabbccdd")}
	cl := waitCluster(t, e, 2)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil || len(res.Placements) != 3 {
		t.Fatalf("plan: %v, %+v", err, res)
	}

	// The default class binds Immediate: db's replicas are refused (their
	// data would land where the provisioner likes), web runs.
	var refused []string
	poll(t, func() error {
		refused, err = e.Apply(ctx, set, res)
		return err
	})
	if len(refused) != 2 || !strings.Contains(refused[0], "rung-test-immediate binds Immediate") {
		t.Fatalf("refused %q, want db's 2 replicas refused for the Immediate class", refused)
	}
	if pods := rungPods(t, c.Client, "rung-vol"); len(pods) != 1 || pods[0].Labels[kube.LabelWorkload] != "web" {
		t.Fatalf("%d pods, want web's only", len(pods))
	}

	// The operator makes the WaitForFirstConsumer class the default.
	for name, dflt := range map[string]string{"rung-test-immediate": "false", "rung-test-local": "true"} {
		sc, err := c.Client.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sc.Annotations = map[string]string{kube.AnnDefaultClass: dflt}
		if _, err := c.Client.StorageV1().StorageClasses().Update(ctx, sc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	applyUntil(t, e, set, res)
	hostOf := map[string]string{}
	for _, n := range []string{"vol-1", "vol-2"} {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hostOf[n] = node.Labels[kube.LabelHostname]
	}
	claims := map[string]corev1.PersistentVolumeClaim{}
	poll(t, func() error {
		l, err := c.Client.CoreV1().PersistentVolumeClaims("rung-vol").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range l.Items {
			claims[p.Name] = p
		}
		if len(claims) != 2 {
			return fmt.Errorf("%d claims, want 2", len(claims))
		}
		return nil
	})
	seen := 0
	for _, p := range rungPods(t, c.Client, "rung-vol") {
		if p.Labels[kube.LabelWorkload] != "db" {
			continue
		}
		seen++
		inst := "pgdata-" + p.Labels[kube.LabelReplica]
		name := kube.ClaimName(inst, "00112233aabbccdd")
		pvc, ok := claims[name]
		if !ok {
			t.Errorf("pod %s: no claim %s", p.Name, name)
			continue
		}
		if d := cmp.Diff([]string{name + " at /var/lib/pg rw"}, mounts(&p)); d != "" {
			t.Errorf("pod %s mounts (-want +got):\n%s", p.Name, d)
		}
		got := viewClaim(&pvc)
		want := claimView{Node: p.Spec.NodeName, Class: "rung-test-local", Size: "1Gi", Labels: claimLabels("vol", "pgdata", inst, "00112233aabbccdd")}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("claim %s (-want +got):\n%s", name, d)
		}
		// The claim's node is the one the pod's required affinity pins it to.
		aff := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
		if aff.Values[0] != hostOf[pvc.Annotations[kube.AnnSelectedNode]] {
			t.Errorf("pod %s pinned on hostname %v, its claim %s on node %s", p.Name, aff.Values, name, pvc.Annotations[kube.AnnSelectedNode])
		}
		if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("1Gi")) != 0 {
			t.Errorf("claim %s asks %s", name, q.String())
		}
	}
	if seen != 2 {
		t.Fatalf("%d db pods, want 2 (Pod Security admits a pod with a claim)", seen)
	}

	// Drift: the claim's node changed behind rung's back is put back.
	first := kube.ClaimName("pgdata-0", "00112233aabbccdd")
	node := claims[first].Annotations[kube.AnnSelectedNode]
	pvc := claims[first]
	pvc.Annotations[kube.AnnSelectedNode] = "elsewhere"
	if _, err := c.Client.CoreV1().PersistentVolumeClaims("rung-vol").Update(ctx, &pvc, metav1.UpdateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		p, err := c.Client.CoreV1().PersistentVolumeClaims("rung-vol").Get(ctx, first, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := p.Annotations[kube.AnnSelectedNode]; got != node {
			return fmt.Errorf("claim %s on %s, want %s put back", first, got, node)
		}
		if !log.has("drift", "PersistentVolumeClaim/rung-vol/"+first) {
			return errors.New("drift not audited yet")
		}
		return nil
	})

	// db goes, its Volume stays: the claims stay (the data is theirs).
	set.Workloads = set.Workloads[1:]
	res = replan(t, e, set, cl)
	liveClaims := func() int {
		l, err := c.Client.CoreV1().PersistentVolumeClaims("rung-vol").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
	poll(t, func() error {
		for _, p := range rungPods(t, c.Client, "rung-vol") {
			if p.Labels[kube.LabelWorkload] == "db" {
				return fmt.Errorf("db pod %s still there", p.Name)
			}
		}
		return nil
	})
	if n := liveClaims(); n != 2 {
		t.Fatalf("%d claims after db went, want its 2 kept", n)
	}
	// The Volume goes: so do its claims (the apiserver's pvc-protection
	// finalizer holds them as deleted until a controller, absent here,
	// sees no pod uses them).
	set.Volumes = nil
	applyUntil(t, e, set, res)
	poll(t, func() error {
		if n := liveClaims(); n != 0 {
			return fmt.Errorf("%d claims left after the Volume went", n)
		}
		return nil
	})
}
