package kubernetes_test

// One test binary, one apiserver: every cluster test is a subtest of
// TestCluster (the apiserver's compile and start are the expensive part).

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/engine/kubernetes/kubetest"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/topology"
)

const deadline = 90 * time.Second

// addNodes makes a Ready node per topology node, its domains as labels
// (region and datacenter as the well-known labels, the others as
// rung.dev/<level>), its capacity as allocatable, and rung.dev/kata=true
// on nodes that list the vm tier.
func addNodes(t *testing.T, c kubernetes.Interface, top v1.Topology) {
	t.Helper()
	ctx := context.Background()
	for _, n := range top.Spec.Nodes {
		l := map[string]string{"kubernetes.io/hostname": n.Name}
		for level, d := range n.Domains {
			switch level {
			case "region":
				l[kube.LabelRegion] = d
			case "datacenter":
				l[kube.LabelZone] = d
			default:
				l[kube.LabelPrefix+level] = d
			}
		}
		if n.Host != "" {
			l[kube.LabelHost] = n.Host
		}
		for _, r := range n.Runtimes {
			if r == v1.TierVM {
				l["runtime.rung.dev/kata"] = "true"
			}
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: l}}
		created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
		created.Status.Allocatable = corev1.ResourceList{}
		if n.Capacity.CPU != nil {
			created.Status.Allocatable[corev1.ResourceCPU] = *n.Capacity.CPU
		}
		if n.Capacity.Memory != nil {
			created.Status.Allocatable[corev1.ResourceMemory] = *n.Capacity.Memory
		}
		created.Status.Capacity = created.Status.Allocatable
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func addRuntimeClasses(t *testing.T, c kubernetes.Interface, kata bool) {
	t.Helper()
	rcs := []nodev1.RuntimeClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "runc"}, Handler: "runc"},
		{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc"},
	}
	if kata {
		rcs = append(rcs, nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata-qemu",
			Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"runtime.rung.dev/kata": "true"}}})
	}
	for _, rc := range rcs {
		if _, err := c.NodeV1().RuntimeClasses().Create(context.Background(), &rc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.NodeV1().RuntimeClasses().Delete(context.Background(), rc.Name, metav1.DeleteOptions{}) })
	}
}

// auditLog collects the engine's audit records.
type auditLog struct {
	mu  sync.Mutex
	rec []audit.Record
}

func (a *auditLog) add(_ context.Context, r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rec = append(a.rec, r)
	return nil
}

func (a *auditLog) has(action, object string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.rec {
		if r.Action == action && strings.Contains(r.Object, object) {
			return true
		}
	}
	return false
}

// engineFor starts an engine through a kubeconfig file, as rung up does.
func engineFor(t *testing.T, c *kubetest.Cluster, opts kube.Options, log *auditLog) *kube.Engine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := kube.Config{Kubeconfig: c.Kubeconfig(t, kubetest.AdminToken), Objects: opts}
	if log != nil {
		cfg.Audit = log.add
	}
	e, err := kube.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitCluster polls the engine's cache until it sees n nodes.
func waitCluster(t *testing.T, e *kube.Engine, n int) kube.Cluster {
	t.Helper()
	var c kube.Cluster
	poll(t, func() error {
		c = e.Cluster()
		if got := len(c.Topology.Spec.Nodes); got != n {
			return fmt.Errorf("engine sees %d nodes, want %d", got, n)
		}
		if len(c.Down) > 0 {
			return fmt.Errorf("engine sees nodes %v not Ready yet", c.Down)
		}
		return nil
	})
	return c
}

func poll(t *testing.T, f func() error) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("after %v: %v", deadline, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// applyUntil applies until the apiserver accepts everything (a new
// namespace reaches the admission plugins' caches a moment later).
func applyUntil(t *testing.T, e *kube.Engine, set *v1.Set, res *scheduler.Result) {
	t.Helper()
	poll(t, func() error {
		refused, err := e.Apply(context.Background(), set, res)
		if len(refused) > 0 {
			t.Fatalf("refused: %v", refused)
		}
		return err
	})
}

func rungPods(t *testing.T, c kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	l, err := c.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func TestCluster(t *testing.T) {
	c := kubetest.Start(t)
	addRuntimeClasses(t, c.Client, true)

	// First: it starts rung up on a cluster with nothing of rung's yet, as
	// a user does (a fresh rung prunes what an earlier one made, and with
	// no namespace controller here a deleted namespace never goes).
	t.Run("rung up --backend kubernetes end to end", func(t *testing.T) { testRungUp(t, c) })
	for _, ex := range []string{"university", "four-questions"} {
		t.Run("example "+ex, func(t *testing.T) { testExample(t, c, ex) })
	}
	t.Run("privileged pod refused by Pod Security", func(t *testing.T) { testPodSecurity(t, c) })
	t.Run("tier without RuntimeClass refused", func(t *testing.T) { testNoRuntimeClass(t, c) })
	t.Run("drift put back", func(t *testing.T) { testDrift(t, c) })
	t.Run("tenant sees only its namespace", func(t *testing.T) { testTenantRBAC(t, c) })
	t.Run("kubeconfig without rights", func(t *testing.T) { testNoRights(t, c) })
	t.Run("networks: policies and services", func(t *testing.T) { testNetwork(t, c) }) // network_cluster_test.go
	t.Run("volumes: claims pinned to the planned node", func(t *testing.T) { testVolumes(t, c) })
	t.Run("pods per second", func(t *testing.T) { testThroughput(t, c) })
}

// testExample: pods land exactly where `rung plan` puts the example's
// replicas on its own Topology, with the tier's RuntimeClass; deleting a
// node re-plans its replicas elsewhere and leaves the others be.
func testExample(t *testing.T, c *kubetest.Cluster, dir string) {
	set, err := v1.Load("../../../examples/" + dir)
	if err != nil {
		t.Fatal(err)
	}
	set.ApplyDefaults()
	_, offline, err := scheduler.PlanSet(set, topology.DefaultRuntimes, scheduler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, top := range set.Topologies {
		addNodes(t, c.Client, top)
	}
	e := engineFor(t, c, kube.Options{}, nil)
	n := 0
	for _, top := range set.Topologies {
		n += len(top.Spec.Nodes)
	}
	cl := waitCluster(t, e, n)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]scheduler.Placement{}
	for _, p := range offline.Placements {
		want[fmt.Sprintf("%s[%d]", p.Workload, p.Replica)] = p
	}
	if len(res.Placements) != len(offline.Placements) || len(res.Unplaced) != len(offline.Unplaced) {
		t.Fatalf("cluster plan: %d placed, %d unplaced; rung plan: %d placed, %d unplaced", len(res.Placements), len(res.Unplaced), len(offline.Placements), len(offline.Unplaced))
	}
	applyUntil(t, e, set, res)
	classOf := map[string]string{"container": "runc", "sandbox": "gvisor", "vm": "kata", "host": "runc"}
	seen := 0
	for _, tn := range set.Tenants {
		for _, p := range rungPods(t, c.Client, kube.Namespace(tn.Metadata.Name)) {
			key := fmt.Sprintf("%s/%s[%s]", tn.Metadata.Name, p.Labels[kube.LabelWorkload], p.Labels[kube.LabelReplica])
			w, ok := want[key]
			if !ok {
				t.Errorf("pod %s: replica %s not in rung plan", p.Name, key)
				continue
			}
			seen++
			if p.Spec.NodeName != w.Node {
				t.Errorf("%s: pod on %s, rung plan puts it on %s", key, p.Spec.NodeName, w.Node)
			}
			aff := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
			if aff.Key != kube.LabelHostname || len(aff.Values) != 1 || aff.Values[0] != w.Node {
				t.Errorf("%s: required node affinity %+v, want hostname %s", key, aff, w.Node)
			}
			if p.Spec.RuntimeClassName == nil || *p.Spec.RuntimeClassName != classOf[w.Tier] {
				t.Errorf("%s: runtimeClassName %v, want %s (tier %s)", key, p.Spec.RuntimeClassName, classOf[w.Tier], w.Tier)
			}
			if p.Spec.HostUsers == nil || *p.Spec.HostUsers {
				t.Errorf("%s: hostUsers is not false", key)
			}
		}
	}
	if seen != len(offline.Placements) {
		t.Fatalf("%d rung pods, rung plan places %d replicas", seen, len(offline.Placements))
	}

	// Delete the node of the first replica: it is re-placed, the others stay.
	gone := res.Placements[0]
	if err := c.Client.CoreV1().Nodes().Delete(context.Background(), gone.Node, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cl = waitCluster(t, e, n-1)
	res2, notes, err := kube.PlanOn(set, cl, res)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("re-plan: %v", notes)
	moved := false
	for i, p := range res2.Placements {
		_ = i
		if p.Workload == gone.Workload && p.Replica == gone.Replica {
			moved = p.Node != gone.Node
		}
	}
	if !moved {
		t.Fatalf("replica %s[%d] not re-placed off deleted node %s", gone.Workload, gone.Replica, gone.Node)
	}
	applyUntil(t, e, set, res2)
	tenant, wl, _ := strings.Cut(gone.Workload, "/")
	poll(t, func() error {
		for _, p := range rungPods(t, c.Client, kube.Namespace(tenant)) {
			if p.Labels[kube.LabelWorkload] == wl && p.Labels[kube.LabelReplica] == fmt.Sprint(gone.Replica) {
				if p.Spec.NodeName == gone.Node {
					return fmt.Errorf("pod %s still on deleted node %s", p.Name, gone.Node)
				}
			}
		}
		return nil
	})
}

// testPodSecurity: the cluster's own Pod Security admission refuses a
// privileged pod in a tenant namespace rung made, while rung's pods there
// are admitted.
func testPodSecurity(t *testing.T, c *kubetest.Cluster) {
	e := engineFor(t, c, kube.Options{}, nil)
	addNodes(t, c.Client, v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: "psa-1", Domains: map[string]string{"rack": "r1"}, Capacity: v1.Resources{CPU: resource.NewQuantity(4, resource.DecimalSI), Memory: resource.NewQuantity(8<<30, resource.BinarySI)}}}}})
	set := oneWorkload("psa", "web", 1)
	cl := waitCluster(t, e, 1)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil || len(res.Placements) != 1 {
		t.Fatalf("plan: %v %+v", err, res)
	}
	applyUntil(t, e, set, res)
	if got := len(rungPods(t, c.Client, kube.Namespace("psa"))); got != 1 {
		t.Fatalf("rung's pod: %d pods, want 1 admitted", got)
	}
	priv := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "evil", Namespace: kube.Namespace("psa")},
		Spec: corev1.PodSpec{NodeName: "psa-1", Containers: []corev1.Container{{
			Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: &priv},
		}}},
	}
	_, err = c.Client.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("privileged pod: %v, want refused by PodSecurity", err)
	}
	t.Logf("refused as expected: %v", err)
}

func oneWorkload(tenant, name string, replicas int) *v1.Set {
	set := &v1.Set{
		Tenants: []v1.Tenant{{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindTenant}, Metadata: v1.ObjectMeta{Name: tenant},
			Spec: v1.TenantSpec{Quota: v1.Quota{CPU: resource.NewQuantity(8, resource.DecimalSI), Replicas: 500}}}},
		Workloads: []v1.Workload{{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindWorkload}, Metadata: v1.ObjectMeta{Name: name, Tenant: tenant},
			Spec: v1.WorkloadSpec{Image: "registry.example/app:1", Replicas: &replicas,
				Resources: v1.Resources{CPU: resource.NewMilliQuantity(10, resource.DecimalSI), Memory: resource.NewQuantity(16<<20, resource.BinarySI)}}}},
	}
	set.ApplyDefaults()
	return set
}

// testDrift: a label changed, a policy deleted behind rung's back are
// audited and put back by the informers' handlers (no re-apply is asked).
func testDrift(t *testing.T, c *kubetest.Cluster) {
	log := &auditLog{}
	e := engineFor(t, c, kube.Options{}, log)
	addNodes(t, c.Client, v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: "drift-1", Domains: map[string]string{"rack": "r1"}, Capacity: v1.Resources{CPU: resource.NewQuantity(4, resource.DecimalSI), Memory: resource.NewQuantity(8<<30, resource.BinarySI)}}}}})
	set := oneWorkload("drift", "web", 1)
	cl := waitCluster(t, e, 1)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyUntil(t, e, set, res)
	ctx := context.Background()
	ns := kube.Namespace("drift")
	n, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	if _, err := c.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{FieldManager: "someone"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "rung-isolate", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		n, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if v := n.Labels["pod-security.kubernetes.io/enforce"]; v != "restricted" {
			return fmt.Errorf("enforce label %q, want restricted put back", v)
		}
		if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Get(ctx, "rung-isolate", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("isolation policy not put back: %w", err)
		}
		if !log.has("drift", "Namespace/"+ns) || !log.has("drift", "NetworkPolicy/"+ns+"/rung-isolate") {
			return errors.New("drift not audited yet")
		}
		return nil
	})
}

// testTenantRBAC: with RoleBindings on, a tenant's user (group
// rung:tenant:NAME) lists its own namespace's pods and is refused
// another tenant's.
func testTenantRBAC(t *testing.T, c *kubetest.Cluster) {
	e := engineFor(t, c, kube.Options{TenantRoleBindings: true}, nil)
	addNodes(t, c.Client, v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: "rbac-1", Domains: map[string]string{"rack": "r1"}, Capacity: v1.Resources{CPU: resource.NewQuantity(4, resource.DecimalSI), Memory: resource.NewQuantity(8<<30, resource.BinarySI)}}}}})
	set := oneWorkload("ta", "web", 1)
	other := oneWorkload("tb", "web", 1)
	set.Tenants = append(set.Tenants, other.Tenants...)
	set.Workloads = append(set.Workloads, other.Workloads...)
	cl := waitCluster(t, e, 1)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	applyUntil(t, e, set, res)
	// ClusterRole view is aggregated by kube-controller-manager, which
	// does not run here: play it for pods.
	view, err := c.Client.RbacV1().ClusterRoles().Get(context.Background(), "view", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	view.Rules = append(view.Rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}})
	if _, err := c.Client.RbacV1().ClusterRoles().Update(context.Background(), view, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	as := rest.CopyConfig(c.Loopback)
	as.Impersonate = rest.ImpersonationConfig{UserName: "alice", Groups: []string{kube.TenantGroupPrefx + "ta", "system:authenticated"}}
	alice, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	poll(t, func() error {
		own, err := alice.CoreV1().Pods(kube.Namespace("ta")).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("own namespace: %w", err)
		}
		if len(own.Items) != 1 {
			return fmt.Errorf("own namespace: %d pods, want 1", len(own.Items))
		}
		return nil
	})
	if _, err := alice.CoreV1().Pods(kube.Namespace("tb")).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("other tenant's namespace: %v, want forbidden", err)
	}
}

// testNoRights: a kubeconfig whose user has no rights is refused with the
// verbs and resources it lacks; the admin's (every other test) works.
func testNoRights(t *testing.T, c *kubetest.Cluster) {
	_, err := kube.New(context.Background(), kube.Config{Kubeconfig: c.Kubeconfig(t, kubetest.NobodyToken)})
	if !errors.Is(err, kube.ErrForbidden) || !strings.Contains(err.Error(), "list nodes") || !strings.Contains(err.Error(), "create pods") {
		t.Fatalf("err = %v, want ErrForbidden naming list nodes and create pods", err)
	}
	t.Log(err)
}

// testThroughput measures pods/s through rung (plan + Apply: namespace,
// policies, pods) against creating the same pods directly with client-go
// (same parallelism, namespace made beforehand), side by side in rounds
// whose order alternates, so that neither side always runs on a warmer
// apiserver. It reports; it asserts nothing about speed.
func testThroughput(t *testing.T, c *kubetest.Cluster) {
	const n, rounds = 200, 3
	e := engineFor(t, c, kube.Options{}, nil)
	addNodes(t, c.Client, v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: "bench-1", Domains: map[string]string{"rack": "r1"}, Capacity: v1.Resources{CPU: resource.NewQuantity(64, resource.DecimalSI), Memory: resource.NewQuantity(256<<30, resource.BinarySI)}}}}})
	cl := waitCluster(t, e, 1)
	set := &v1.Set{}
	var prev *scheduler.Result
	var viaRung, direct time.Duration
	for r := range rounds {
		// Each round adds a tenant of n replicas; what earlier rounds made
		// is up to date and not sent again.
		more := oneWorkload(fmt.Sprintf("bench-%d", r), "web", n)
		more.Tenants[0].Spec.Organization = "bench" // one node: the tenants share its kernel
		set.Tenants = append(set.Tenants, more.Tenants...)
		set.Workloads = append(set.Workloads, more.Workloads...)
		through := func() time.Duration {
			start := time.Now()
			res, _, err := kube.PlanOn(set, cl, prev)
			if err != nil || len(res.Placements) != n*(r+1) {
				t.Fatalf("plan: %v, %d placed, unplaced %.500v", err, len(res.Placements), res.Unplaced)
			}
			applyUntil(t, e, set, res)
			prev = res
			return time.Since(start)
		}
		straight := func() time.Duration {
			// The same namespace as rung's (Pod Security labels, limits,
			// quota, policy: the admission work per pod is the same), made
			// beforehand; nothing here carries rung's label, so that its
			// prune leaves them be.
			ns := fmt.Sprintf("direct-bench-%d", r)
			res, _, err := kube.PlanOn(more, cl, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var pods []*corev1.Pod
			for _, o := range kube.Build(more, res, cl, kube.Options{}).Objects {
				m := o.(metav1.Object)
				delete(m.GetLabels(), kube.LabelManagedBy)
				var err error
				switch o := o.(type) {
				case *corev1.Namespace:
					o.Name = ns
					_, err = c.Client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
				case *corev1.LimitRange:
					o.Namespace = ns
					_, err = c.Client.CoreV1().LimitRanges(ns).Create(ctx, o, metav1.CreateOptions{})
				case *corev1.ResourceQuota:
					o.Namespace = ns
					_, err = c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, o, metav1.CreateOptions{})
				case *networkingv1.NetworkPolicy:
					o.Namespace = ns
					_, err = c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, o, metav1.CreateOptions{})
				case *corev1.Pod:
					o.Namespace = ns
					pods = append(pods, o)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			sem := make(chan struct{}, 16)
			var wg sync.WaitGroup
			for _, p := range pods {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if _, err := c.Client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			return time.Since(start)
		}
		var a, b time.Duration
		if r%2 == 0 {
			a = through()
			b = straight()
		} else {
			b = straight()
			a = through()
		}
		viaRung, direct = viaRung+a, direct+b
		t.Logf("round %d, %d pods: through rung %.0f pods/s (%v), direct client-go %.0f pods/s (%v): ratio %.2f", r, n,
			n/a.Seconds(), a, n/b.Seconds(), b, b.Seconds()/a.Seconds())
	}
	t.Logf("%d pods: through rung %.0f pods/s, direct client-go %.0f pods/s: ratio %.2f", n*rounds,
		n*rounds/viaRung.Seconds(), n*rounds/direct.Seconds(), direct.Seconds()/viaRung.Seconds())
}

// TestRungBinaryLean: rung's own binary never links the apiserver.
func TestRungBinaryLean(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "rung.dev/rung/cmd/rung").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := string(out)
	if !strings.Contains(deps, "k8s.io/client-go/kubernetes\n") {
		t.Errorf("rung does not link client-go: the engine is not wired in?")
	}
	for _, l := range strings.Split(deps, "\n") {
		if strings.HasPrefix(l, "k8s.io/kubernetes") || strings.HasPrefix(l, "k8s.io/apiserver/") {
			t.Errorf("rung links %s: the apiserver belongs in test binaries only", l)
		}
	}
}

// testNoRuntimeClass: a workload that needs the vm tier, on a cluster
// where no node matches the kata RuntimeClass, is unplaced with the
// scheduler's explanation and gets no pod; the same cluster runs a
// container-tier workload.
func testNoRuntimeClass(t *testing.T, c *kubetest.Cluster) {
	e := engineFor(t, c, kube.Options{}, nil)
	addNodes(t, c.Client, v1.Topology{Spec: v1.TopologySpec{Nodes: []v1.Node{{Name: "novm-1", Domains: map[string]string{"rack": "r1"}, Capacity: v1.Resources{CPU: resource.NewQuantity(4, resource.DecimalSI), Memory: resource.NewQuantity(8<<30, resource.BinarySI)}}}}})
	set := oneWorkload("novm", "web", 1)
	vm := oneWorkload("novm", "secure", 1).Workloads[0]
	vm.Spec.Isolation.Minimum = v1.TierVM
	set.Workloads = append(set.Workloads, vm)
	cl := waitCluster(t, e, 1)
	res, _, err := kube.PlanOn(set, cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Placements) != 1 || res.Placements[0].Workload != "novm/web" {
		t.Fatalf("placements %+v, want only novm/web", res.Placements)
	}
	if len(res.Unplaced) != 1 || res.Unplaced[0].Workload != "novm/secure" {
		t.Fatalf("unplaced %+v, want novm/secure", res.Unplaced)
	}
	t.Logf("novm/secure unplaced: %v", res.Unplaced[0].Reasons)
	applyUntil(t, e, set, res)
	for _, p := range rungPods(t, c.Client, kube.Namespace("novm")) {
		if p.Labels[kube.LabelWorkload] == "secure" {
			t.Fatalf("pod %s made for a tier no RuntimeClass offers", p.Name)
		}
	}
}
