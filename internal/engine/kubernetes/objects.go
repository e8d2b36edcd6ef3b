package kubernetes

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
)

// Labels on every object rung makes.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	ManagedBy        = "rung"
	LabelTenantOf    = "rung.dev/tenant"
	LabelWorkload    = "rung.dev/workload"
	LabelReplica     = "rung.dev/replica"
	LabelTier        = "rung.dev/tier"
	NamespacePrefix  = "rung-"
	nonRootUID       = 65534
	quotaName        = "rung-quota"
	limitRangeName   = "rung-defaults"
	isolationName    = "rung-isolate"
	roleBindingName  = "rung-tenant"
	TenantGroupPrefx = "rung:tenant:"
)

// ErrNoRuntimeClass: the planned node has no RuntimeClass for the tier.
var ErrNoRuntimeClass = errors.New("no RuntimeClass")

// Namespace is the namespace of a tenant.
func Namespace(tenant string) string { return NamespacePrefix + tenant }

// PodName is a replica's pod on a node: WORKLOAD-N-HASH, HASH naming the
// node, so that a re-placed replica is a new pod (a pod's node is
// immutable) and the old one is deleted as any other stale object.
func PodName(workload string, replica int, node string) string {
	h := fnv.New32a()
	h.Write([]byte(node))
	return fmt.Sprintf("%s-%d-%08x", workload, replica, h.Sum32())
}

func managed(tenant string, extra map[string]string) map[string]string {
	l := map[string]string{LabelManagedBy: ManagedBy, LabelTenantOf: tenant}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// Desired is every object rung wants in the cluster for one plan.
type Desired struct {
	Objects []runtime.Object
	// Refused are replicas that cannot be turned into pods, with why.
	Refused []string
}

// Options shape the objects.
type Options struct {
	// TenantRoleBindings binds ClusterRole "view" in a tenant's namespace
	// to the group rung:tenant:NAME (the tenant's users, as the cluster's
	// authenticator names them).
	TenantRoleBindings bool
	// DefaultRequest are the LimitRange's per-container defaults (default
	// 100m CPU, 128Mi memory).
	DefaultCPU, DefaultMemory string
	// NodePorts is the cluster's node-port range (the apiserver's
	// --service-node-port-range; default 30000-32767): a published port
	// asking for a nodePort outside it is not published (network.go).
	NodePorts string
	// StorageClass is the class of volumes' claims ("" the cluster's
	// default); it must bind WaitForFirstConsumer (volume.go).
	StorageClass string
}

// Build turns a plan into objects. It is pure: set and res as rung planned
// them against c (ReadCluster's view of the same cluster).
func Build(set *v1.Set, res *scheduler.Result, c Cluster, opts Options) Desired {
	var d Desired
	for _, t := range set.Tenants {
		d.Objects = append(d.Objects, tenantObjects(t, opts)...)
	}
	netObjs, problems := NetworkObjects(set, opts) // network.go
	d.Objects = append(d.Objects, netObjs...)
	d.Refused = append(d.Refused, problems...)
	vols := newVolumes(set, c) // volume.go
	wl := map[string]*v1.Workload{}
	for i := range set.Workloads {
		w := &set.Workloads[i]
		wl[w.Metadata.Tenant+"/"+w.Metadata.Name] = w
	}
	domains := map[string]map[string]string{}
	for _, n := range c.Topology.Spec.Nodes {
		domains[n.Name] = n.Domains
		if n.Host != "" {
			domains[n.Name] = nil
		}
	}
	for _, n := range c.Topology.Spec.Nodes { // a VM node is in its host's domains
		if n.Host != "" {
			domains[n.Name] = domains[n.Host]
		}
	}
	for _, p := range res.Placements {
		w, ok := wl[p.Workload]
		if !ok {
			d.Refused = append(d.Refused, fmt.Sprintf("%s[%d]: workload not in the set", p.Workload, p.Replica))
			continue
		}
		pod, err := Pod(w, p, c, domains[p.Node])
		if err == nil {
			err = vols.mount(pod, w, p)
		}
		if err != nil {
			d.Refused = append(d.Refused, err.Error())
			continue
		}
		d.Objects = append(d.Objects, pod)
	}
	d.Objects = append(d.Objects, vols.objects()...)
	return d
}

func tenantObjects(t v1.Tenant, opts Options) []runtime.Object {
	name := t.Metadata.Name
	ns := Namespace(name)
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Namespace: ns, Labels: managed(name, nil)}
	}
	out := []runtime.Object{
		&corev1.Namespace{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: managed(name, map[string]string{
				"pod-security.kubernetes.io/enforce":         "restricted",
				"pod-security.kubernetes.io/enforce-version": "latest",
				"pod-security.kubernetes.io/audit":           "restricted",
				"pod-security.kubernetes.io/warn":            "restricted",
			})},
		},
		&corev1.LimitRange{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"},
			ObjectMeta: meta(limitRangeName),
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
				Type: corev1.LimitTypeContainer,
				Default: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse(or(opts.DefaultCPU, "100m")),
					corev1.ResourceMemory: resource.MustParse(or(opts.DefaultMemory, "128Mi")),
				},
				DefaultRequest: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse(or(opts.DefaultCPU, "100m")),
					corev1.ResourceMemory: resource.MustParse(or(opts.DefaultMemory, "128Mi")),
				},
			}}},
		},
	}
	q := t.Spec.Quota
	if q.CPU != nil || q.Memory != nil || q.Replicas > 0 {
		hard := corev1.ResourceList{}
		if q.CPU != nil {
			hard[corev1.ResourceLimitsCPU] = q.CPU.DeepCopy()
			hard[corev1.ResourceRequestsCPU] = q.CPU.DeepCopy()
		}
		if q.Memory != nil {
			hard[corev1.ResourceLimitsMemory] = q.Memory.DeepCopy()
			hard[corev1.ResourceRequestsMemory] = q.Memory.DeepCopy()
		}
		if q.Replicas > 0 {
			hard[corev1.ResourcePods] = *resource.NewQuantity(int64(q.Replicas), resource.DecimalSI)
		}
		out = append(out, &corev1.ResourceQuota{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
			ObjectMeta: meta(quotaName),
			Spec:       corev1.ResourceQuotaSpec{Hard: hard},
		})
	}
	if opts.TenantRoleBindings {
		out = append(out, &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(roleBindingName),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "Group", Name: TenantGroupPrefx + name}},
		})
	}
	return out
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Pod is one placed replica as a pod: pinned to the planned node (nodeName
// and a required node affinity on its hostname; the default scheduler
// never decides), on the tier's RuntimeClass, with hostUsers: false and
// the restricted Pod Security profile's settings, a read-only root and the
// workload's resources as requests and limits.
func Pod(w *v1.Workload, p scheduler.Placement, c Cluster, domains map[string]string) (*corev1.Pod, error) {
	tier := v1.Tier(p.Tier)
	class, ok := c.Classes[p.Node][tier]
	if !ok {
		return nil, fmt.Errorf("%s[%d]: node %s: %w for tier %s (DESIGN §14: never run weaker)", p.Workload, p.Replica, p.Node, ErrNoRuntimeClass, tier)
	}
	tenant := w.Metadata.Tenant
	labels := managed(tenant, map[string]string{
		LabelWorkload: w.Metadata.Name,
		LabelReplica:  strconv.Itoa(p.Replica),
		LabelTier:     string(tier),
	})
	for level, dom := range domains {
		labels[LabelPrefix+"domain-"+level] = dom
	}
	res := corev1.ResourceList{}
	if q := w.Spec.Resources.CPU; q != nil {
		res[corev1.ResourceCPU] = q.DeepCopy()
	}
	if q := w.Spec.Resources.Memory; q != nil {
		res[corev1.ResourceMemory] = q.DeepCopy()
	}
	var env []corev1.EnvVar
	for k, v := range w.Spec.Env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	slices.SortFunc(env, func(a, b corev1.EnvVar) int { return strings.Compare(a.Name, b.Name) })
	var add []corev1.Capability
	for _, c := range w.Spec.Capabilities {
		add = append(add, corev1.Capability(strings.TrimPrefix(strings.ToUpper(c), "CAP_")))
	}
	restart := corev1.RestartPolicyAlways
	switch w.Spec.RestartPolicy {
	case v1.RestartOnFailure:
		restart = corev1.RestartPolicyOnFailure
	case v1.RestartNever:
		restart = corev1.RestartPolicyNever
	}
	f, t := false, true
	uid := int64(nonRootUID)
	hostname := c.Hostnames[p.Node]
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: PodName(w.Metadata.Name, p.Replica, p.Node), Namespace: Namespace(tenant), Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                     p.Node,
			RuntimeClassName:             &class,
			HostUsers:                    &f,
			AutomountServiceAccountToken: &f,
			EnableServiceLinks:           &f,
			RestartPolicy:                restart,
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname}}},
				}}},
			}},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   &t,
				RunAsUser:      &uid,
				RunAsGroup:     &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:      "main",
				Image:     w.Spec.Image,
				Command:   w.Spec.Command,
				Args:      w.Spec.Args,
				Env:       env,
				Resources: corev1.ResourceRequirements{Requests: res, Limits: res},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: &f,
					ReadOnlyRootFilesystem:   &t,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: add},
				},
			}},
		},
	}
	if tier == v1.TierHost {
		pod.Spec.Tolerations = []corev1.Toleration{{Key: TaintTenant, Operator: corev1.TolerationOpEqual, Value: tenant, Effect: corev1.TaintEffectNoSchedule}}
	}
	return pod, nil
}
