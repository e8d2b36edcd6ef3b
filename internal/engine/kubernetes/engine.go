package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/scheduler"
)

// FieldManager is rung's server-side apply field manager.
const FieldManager = "rung"

// Config is how an Engine reaches its cluster.
type Config struct {
	// Kubeconfig is a kubeconfig file; "" uses the in-cluster config.
	Kubeconfig string
	// Rest, when set, is used instead of Kubeconfig (tests).
	Rest    *rest.Config
	Objects Options
	// Handlers map tiers to RuntimeClass handlers (default DefaultHandlers).
	Handlers map[v1.Tier]string
	// Parallel bounds concurrent applies (default 16).
	Parallel int
	// Audit records drift and refusals (nil: logged only).
	Audit  func(context.Context, audit.Record) error
	Logger *slog.Logger
}

// Engine turns rung's plans into Kubernetes objects and keeps them so.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	Client  kubernetes.Interface
	dyn     dynamic.Interface
	all     informers.SharedInformerFactory // nodes, RuntimeClasses
	own     informers.SharedInformerFactory // what rung made (label-selected)
	listers map[string]func(ns, name string) (runtime.Object, error)
	queue   workqueue.TypedRateLimitingInterface[objKey]
	changed chan struct{}

	mu      sync.Mutex
	desired map[objKey]*unstructured.Unstructured
	digest  [sha256.Size]byte
	cluster Cluster
}

type objKey struct{ Kind, Namespace, Name string }

func (k objKey) String() string {
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name
}

// kinds are the resources rung writes, in apply order.
var kinds = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"Namespace", schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}},
	{"LimitRange", schema.GroupVersionResource{Version: "v1", Resource: "limitranges"}},
	{"ResourceQuota", schema.GroupVersionResource{Version: "v1", Resource: "resourcequotas"}},
	{"NetworkPolicy", schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}},
	{"RoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}},
	{"Pod", schema.GroupVersionResource{Version: "v1", Resource: "pods"}},
	{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},                             // network.go
	{"PersistentVolumeClaim", schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}}, // volume.go
}

func gvrOf(kind string) schema.GroupVersionResource {
	for _, k := range kinds {
		if k.kind == kind {
			return k.gvr
		}
	}
	panic("kubernetes: unknown kind " + kind)
}

// RestConfig loads a kubeconfig file, or the in-cluster config for "".
func RestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes: no --kubeconfig and not in a cluster: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: --kubeconfig %s: %w", kubeconfig, err)
	}
	return c, nil
}

// New connects, checks rights and starts the informers; it returns once
// their caches have synced.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	rc := cfg.Rest
	if rc == nil {
		var err error
		if rc, err = RestConfig(cfg.Kubeconfig); err != nil {
			return nil, err
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 && rc.RateLimiter == nil {
		// No client-side token bucket: rung's writes are bounded by its
		// worker pool (Parallel), and the apiserver's priority and
		// fairness is what protects the cluster. A bucket only made a
		// plan of a few hundred pods wait on rung's own side.
		rc.QPS = -1
	}
	// Typed requests and the informers' lists and watches speak protobuf,
	// as Kubernetes' own controllers do; server-side apply needs JSON (dyn).
	pc := rest.CopyConfig(rc)
	pc.ContentType = "application/vnd.kubernetes.protobuf"
	pc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	if err := CheckAccess(ctx, client, cfg.Objects.TenantRoleBindings); err != nil {
		return nil, err
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 16
	}
	e := &Engine{
		cfg: cfg, log: cfg.Logger, Client: client, dyn: dyn,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[objKey]()),
		changed: make(chan struct{}, 1),
		desired: map[objKey]*unstructured.Unstructured{},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.all = informers.NewSharedInformerFactory(client, 0)
	e.own = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = LabelManagedBy + "=" + ManagedBy
	}))
	nodes := e.all.Core().V1().Nodes().Informer()
	rcs := e.all.Node().V1().RuntimeClasses().Informer()
	poke := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { e.poke() },
		UpdateFunc: func(any, any) { e.poke() },
		DeleteFunc: func(any) { e.poke() },
	}
	if _, err := nodes.AddEventHandler(poke); err != nil {
		return nil, err
	}
	if _, err := rcs.AddEventHandler(poke); err != nil {
		return nil, err
	}
	o := e.own
	e.listers = map[string]func(ns, name string) (runtime.Object, error){
		"Namespace": func(_, n string) (runtime.Object, error) { return o.Core().V1().Namespaces().Lister().Get(n) },
		"LimitRange": func(ns, n string) (runtime.Object, error) {
			return o.Core().V1().LimitRanges().Lister().LimitRanges(ns).Get(n)
		},
		"ResourceQuota": func(ns, n string) (runtime.Object, error) {
			return o.Core().V1().ResourceQuotas().Lister().ResourceQuotas(ns).Get(n)
		},
		"NetworkPolicy": func(ns, n string) (runtime.Object, error) {
			return o.Networking().V1().NetworkPolicies().Lister().NetworkPolicies(ns).Get(n)
		},
		"Pod": func(ns, n string) (runtime.Object, error) { return o.Core().V1().Pods().Lister().Pods(ns).Get(n) },
	}
	informersOf := map[string]cache.SharedIndexInformer{
		"Namespace":     o.Core().V1().Namespaces().Informer(),
		"LimitRange":    o.Core().V1().LimitRanges().Informer(),
		"ResourceQuota": o.Core().V1().ResourceQuotas().Informer(),
		"NetworkPolicy": o.Networking().V1().NetworkPolicies().Informer(),
		"Pod":           o.Core().V1().Pods().Informer(),
	}
	if cfg.Objects.TenantRoleBindings {
		e.listers["RoleBinding"] = func(ns, n string) (runtime.Object, error) {
			return o.Rbac().V1().RoleBindings().Lister().RoleBindings(ns).Get(n)
		}
		informersOf["RoleBinding"] = o.Rbac().V1().RoleBindings().Informer()
	}
	e.watchServicesAndClaims(o, informersOf) // volume_engine.go
	for kind, inf := range informersOf {
		h := cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) { e.observe(kind, obj) },
			DeleteFunc: func(obj any) { e.observe(kind, obj) },
		}
		if kind == "Pod" {
			h.AddFunc = func(any) { e.poke() } // status flows back
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}
	e.all.Start(ctx.Done())
	e.own.Start(ctx.Done())
	for t, ok := range e.all.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("kubernetes: %v cache did not sync", t)
		}
	}
	for t, ok := range e.own.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("kubernetes: %v cache did not sync", t)
		}
	}
	e.mu.Lock()
	e.cluster = e.readLocked()
	e.mu.Unlock()
	for _, w := range e.cluster.Warnings {
		e.log.Warn("kubernetes: " + w)
	}
	go func() { <-ctx.Done(); e.queue.ShutDown() }()
	go e.worker(ctx)
	return e, nil
}

// Changed fires when nodes, RuntimeClasses or pods changed: plan again.
func (e *Engine) Changed() <-chan struct{} { return e.changed }

func (e *Engine) poke() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

func (e *Engine) readLocked() Cluster {
	nodes, _ := e.all.Core().V1().Nodes().Lister().List(labels.Everything())
	rcs, _ := e.all.Node().V1().RuntimeClasses().Lister().List(labels.Everything())
	ns := make([]corev1.Node, len(nodes))
	for i, n := range nodes {
		ns[i] = *n
	}
	cs := make([]nodev1.RuntimeClass, len(rcs))
	for i, c := range rcs {
		cs[i] = *c
	}
	return ReadCluster(ns, cs, e.cfg.Handlers)
}

// Cluster reads the cluster as rung's topology now (from the informer
// cache): what the planner plans against.
func (e *Engine) Cluster() Cluster {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cluster = e.readLocked()
	return e.cluster
}

// Apply makes the cluster hold what res planned for set: namespaces and
// their policies for every tenant, a pod per placed replica, and nothing
// else rung made. Unchanged plans are not applied again (drift is found by
// the informers). It returns the replicas it refused.
func (e *Engine) Apply(ctx context.Context, set *v1.Set, res *scheduler.Result) ([]string, error) {
	e.mu.Lock()
	c := e.cluster
	e.mu.Unlock()
	if err := e.readVolumes(ctx, set, &c); err != nil { // volume_engine.go
		return nil, err
	}
	d := Build(set, res, c, e.cfg.Objects)
	want := map[objKey]*unstructured.Unstructured{}
	h := sha256.New()
	for _, o := range d.Objects {
		u, err := toUnstructured(o)
		if err != nil {
			return nil, err
		}
		k := objKey{u.GetKind(), u.GetNamespace(), u.GetName()}
		want[k] = u
		b, _ := json.Marshal(u.Object)
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	e.mu.Lock()
	same := sum == e.digest
	e.desired = want
	e.mu.Unlock()
	for _, r := range d.Refused {
		e.record(ctx, audit.Record{Actor: "kubernetes", Action: "refuse", Object: r, Decision: "Deny"})
	}
	if same {
		return d.Refused, nil
	}
	if err := e.applyAll(ctx, want); err != nil {
		return d.Refused, err
	}
	if err := e.prune(ctx, want); err != nil {
		return d.Refused, err
	}
	e.mu.Lock()
	e.digest = sum
	e.mu.Unlock()
	return d.Refused, nil
}

// applyAll applies namespaces first, then their policies, then the pods,
// each step in parallel: a pod is never created in a namespace whose
// isolation policy, quota and limits are not there yet.
func (e *Engine) applyAll(ctx context.Context, want map[objKey]*unstructured.Unstructured) error {
	var batches [3][]objKey
	for k := range want {
		switch k.Kind {
		case "Namespace":
			batches[0] = append(batches[0], k)
		case "Pod":
			batches[2] = append(batches[2], k)
		default:
			batches[1] = append(batches[1], k)
		}
	}
	for _, batch := range batches {
		if err := e.parallel(ctx, batch, func(k objKey) error {
			// What the informer cache already holds as wanted is not sent
			// again: a plan that changes one replica writes one pod.
			if d, err := e.diff(k, want[k]); err == nil && len(d) == 0 {
				return nil
			}
			return e.apply(ctx, want[k])
		}); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) parallel(ctx context.Context, keys []objKey, f func(objKey) error) error {
	sem := make(chan struct{}, e.cfg.Parallel)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, k := range keys {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(k); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", k, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (e *Engine) apply(ctx context.Context, u *unstructured.Unstructured) error {
	if u.GetKind() == "Pod" {
		if done, err := e.createPod(ctx, u); done || err != nil {
			return err
		}
	}
	r := e.dyn.Resource(gvrOf(u.GetKind()))
	var ri dynamic.ResourceInterface = r
	if ns := u.GetNamespace(); ns != "" {
		ri = r.Namespace(ns)
	}
	_, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil && apierrors.IsInvalid(err) && u.GetKind() == "Pod" {
		// A pod's spec is mostly immutable: replace it.
		if derr := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); derr != nil && !apierrors.IsNotFound(derr) {
			return derr
		}
		_, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	}
	return err
}

// createPod creates a pod the informer cache has never seen with a plain
// create (field manager rung): a new pod is most of what rung writes, and
// a create costs the apiserver a fraction of a server-side apply, which
// has to merge. It reports false when the pod exists (apply it instead).
// A pod's spec is immutable, and drift is found by comparing with what
// rung wants (Subset), not by field ownership, so nothing is lost.
func (e *Engine) createPod(ctx context.Context, u *unstructured.Unstructured) (bool, error) {
	if _, err := e.listers["Pod"](u.GetNamespace(), u.GetName()); !apierrors.IsNotFound(err) {
		return false, nil
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return false, err
	}
	_, err := e.Client.CoreV1().Pods(p.Namespace).Create(ctx, &p, metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case apierrors.IsAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// prune deletes what rung made and no longer wants, pods before the
// namespaces they are in.
func (e *Engine) prune(ctx context.Context, want map[objKey]*unstructured.Unstructured) error {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	var stale []objKey
	add := func(kind string, objs []metav1.Object) {
		for _, o := range objs {
			k := objKey{kind, o.GetNamespace(), o.GetName()}
			if kind == "Namespace" {
				k.Namespace = ""
			}
			if _, ok := want[k]; !ok && o.GetDeletionTimestamp() == nil {
				stale = append(stale, k)
			}
		}
	}
	o := e.own
	pods, _ := o.Core().V1().Pods().Lister().List(sel)
	add("Pod", metas(pods))
	// A pod whose node is gone has no kubelet to confirm its end: it goes
	// at once, as the pod garbage collector does it.
	e.mu.Lock()
	orphans := map[objKey]bool{}
	for _, p := range pods {
		if _, ok := e.cluster.Hostnames[p.Spec.NodeName]; !ok {
			orphans[objKey{"Pod", p.Namespace, p.Name}] = true
		}
	}
	e.mu.Unlock()
	qs, _ := o.Core().V1().ResourceQuotas().Lister().List(sel)
	add("ResourceQuota", metas(qs))
	lrs, _ := o.Core().V1().LimitRanges().Lister().List(sel)
	add("LimitRange", metas(lrs))
	nps, _ := o.Networking().V1().NetworkPolicies().Lister().List(sel)
	add("NetworkPolicy", metas(nps))
	e.pruneServicesAndClaims(sel, add) // volume_engine.go
	nss, _ := o.Core().V1().Namespaces().Lister().List(sel)
	add("Namespace", metas(nss))
	return e.parallel(ctx, stale, func(k objKey) error {
		r := e.dyn.Resource(gvrOf(k.Kind))
		var ri dynamic.ResourceInterface = r
		if k.Namespace != "" {
			ri = r.Namespace(k.Namespace)
		}
		opts := metav1.DeleteOptions{}
		if orphans[k] {
			zero := int64(0)
			opts.GracePeriodSeconds = &zero
		}
		err := ri.Delete(ctx, k.Name, opts)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

func metas[T metav1.Object](in []T) []metav1.Object {
	out := make([]metav1.Object, len(in))
	for i, o := range in {
		out[i] = o
	}
	return out
}

func toUnstructured(o runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func (e *Engine) record(ctx context.Context, r audit.Record) {
	e.log.Warn("kubernetes: "+r.Action, "object", r.Object, "details", string(r.Details))
	if e.cfg.Audit == nil {
		return
	}
	if err := e.cfg.Audit(ctx, r); err != nil {
		e.log.Warn("kubernetes: audit", "err", err)
	}
}

// Wait polls until cond holds on the engine's view, for tests and tools.
func (e *Engine) Wait(ctx context.Context, every time.Duration, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}
