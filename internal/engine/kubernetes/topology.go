package kubernetes

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/topology"
)

// Node labels rung reads (DESIGN §14). A rung.dev/<level> label wins over
// the well-known one for the same level.
const (
	LabelRegion   = "topology.kubernetes.io/region"
	LabelZone     = "topology.kubernetes.io/zone"
	LabelHostname = "kubernetes.io/hostname"
	// LabelPrefix + level names a failure domain: rung.dev/rack=r7.
	LabelPrefix = "rung.dev/"
	// LabelHost marks a VM node: the physical node it runs on.
	LabelHost = "rung.dev/host"
	// LabelTenant marks a node dedicated to one tenant; with the taint of
	// the same key it offers the host tier to that tenant.
	LabelTenant = "rung.dev/tenant"
	// TaintTenant keeps every other pod off a tenant's node.
	TaintTenant = "rung.dev/tenant"
)

// DefaultHandlers are the RuntimeClass handlers of each tier (a handler
// "kata-qemu" or "kata-clh" also counts as kata).
var DefaultHandlers = map[v1.Tier]string{
	v1.TierContainer: "runc",
	v1.TierSandbox:   "runsc",
	v1.TierVM:        "kata",
}

// Cluster is what rung reads off a cluster: its nodes as a Topology, the
// nodes that are not Ready, and the RuntimeClass each tier runs with.
type Cluster struct {
	Topology v1.Topology
	// Down are the nodes whose Ready condition is not True.
	Down []string
	// Warnings say what was read in a way the operator may not expect.
	Warnings []string
	// Hostnames maps node name → kubernetes.io/hostname label value, the
	// key pods are pinned on.
	Hostnames map[string]string
	// Classes maps node name → tier → the RuntimeClass its pods use.
	Classes map[string]map[v1.Tier]string
	// Claims are the volume claims rung made, and Storage the class new
	// ones get (volume.go; read by the engine when the set has volumes).
	Claims  []Claim
	Storage Storage
}

// handlerTier returns the tier a RuntimeClass handler runs, or "".
func handlerTier(handlers map[v1.Tier]string, h string) v1.Tier {
	for _, t := range []v1.Tier{v1.TierContainer, v1.TierSandbox, v1.TierVM} {
		want := handlers[t]
		if want != "" && (h == want || strings.HasPrefix(h, want+"-")) {
			return t
		}
	}
	return ""
}

var builtinLevels = map[string]bool{}

func init() {
	for _, l := range v1.NestedLevels {
		builtinLevels[l] = true
	}
	for _, l := range v1.OrthogonalLevels {
		builtinLevels[l] = true
	}
}

// ReadCluster turns nodes and RuntimeClasses into rung's view. It is pure.
// A tier is available on a node when a RuntimeClass with that tier's
// handler exists and its scheduling.nodeSelector matches the node or is
// empty, as the Kubernetes scheduler reads it; among several, the first by
// name is used. The host tier is offered on nodes both labelled and
// tainted rung.dev/tenant=T, to T only.
func ReadCluster(nodes []corev1.Node, classes []nodev1.RuntimeClass, handlers map[v1.Tier]string) Cluster {
	if handlers == nil {
		handlers = DefaultHandlers
	}
	c := Cluster{
		Topology:  v1.Topology{TypeMeta: v1.TypeMeta{APIVersion: "rung.dev/v1", Kind: v1.KindTopology}, Metadata: v1.ObjectMeta{Name: "kubernetes"}},
		Hostnames: map[string]string{},
		Classes:   map[string]map[v1.Tier]string{},
	}
	classes = slices.Clone(classes)
	sort.Slice(classes, func(a, b int) bool { return classes[a].Name < classes[b].Name })
	nodes = slices.Clone(nodes)
	sort.Slice(nodes, func(a, b int) bool { return nodes[a].Name < nodes[b].Name })
	extra := map[string]bool{}
	for _, n := range nodes {
		node := v1.Node{Name: n.Name, Domains: map[string]string{}, Runtimes: []v1.Tier{}}
		if v := n.Labels[LabelRegion]; v != "" {
			node.Domains["region"] = v
		}
		if v := n.Labels[LabelZone]; v != "" {
			node.Domains["datacenter"] = v
		}
		for k, v := range n.Labels {
			level, ok := strings.CutPrefix(k, LabelPrefix)
			if !ok || v == "" || k == LabelHost || k == LabelTenant || level == "host" || level == "vm" || strings.Contains(level, "/") {
				continue
			}
			node.Domains[level] = v
			if !builtinLevels[level] {
				extra[level] = true
			}
		}
		if len(node.Domains) == 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("node %s has no failure-domain labels (%s, %s or %s<level>): it is its own domain only", n.Name, LabelRegion, LabelZone, LabelPrefix))
			node.Domains = nil
		}
		node.Host = n.Labels[LabelHost]
		if node.Host != "" {
			node.Domains = nil // a VM node is in its host's domains
		}
		node.Capacity = v1.Resources{}
		if q, ok := n.Status.Allocatable[corev1.ResourceCPU]; ok {
			node.Capacity.CPU = &q
		}
		if q, ok := n.Status.Allocatable[corev1.ResourceMemory]; ok {
			node.Capacity.Memory = &q
		}
		c.Hostnames[n.Name] = n.Name
		if h := n.Labels[LabelHostname]; h != "" {
			c.Hostnames[n.Name] = h
		}
		per := map[v1.Tier]string{}
		for _, rc := range classes {
			t := handlerTier(handlers, rc.Handler)
			if t == "" || per[t] != "" {
				continue
			}
			if rc.Scheduling != nil && len(rc.Scheduling.NodeSelector) > 0 &&
				!labels.SelectorFromSet(rc.Scheduling.NodeSelector).Matches(labels.Set(n.Labels)) {
				continue
			}
			if rc.Scheduling != nil && !toleratesAll(rc.Scheduling.Tolerations, n.Spec.Taints) {
				continue
			}
			per[t] = rc.Name
		}
		if tenant := n.Labels[LabelTenant]; tenant != "" {
			if hasTaint(n.Spec.Taints, TaintTenant, tenant) {
				node.Tenant = tenant
				per[v1.TierHost] = per[v1.TierContainer]
			} else {
				c.Warnings = append(c.Warnings, fmt.Sprintf("node %s is labelled %s=%s but not tainted %s=%s:NoSchedule: other pods could land on it, so it offers no host tier", n.Name, LabelTenant, tenant, TaintTenant, tenant))
			}
		}
		for _, t := range v1.Tiers {
			if _, ok := per[t]; ok {
				node.Runtimes = append(node.Runtimes, t)
			}
		}
		c.Classes[n.Name] = per
		if !ready(n) {
			c.Down = append(c.Down, n.Name)
		}
		c.Topology.Spec.Nodes = append(c.Topology.Spec.Nodes, node)
	}
	for l := range extra {
		c.Topology.Spec.Levels = append(c.Topology.Spec.Levels, l)
	}
	sort.Strings(c.Topology.Spec.Levels)
	return c
}

// ready reports whether n's Ready condition is True.
func ready(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasTaint(ts []corev1.Taint, key, value string) bool {
	for _, t := range ts {
		if t.Key == key && t.Value == value && (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute) {
			return true
		}
	}
	return false
}

// toleratesAll is the scheduler's rule for a RuntimeClass's tolerations:
// its pods can only go where they tolerate every NoSchedule/NoExecute taint
// other than the tenant taint, which rung's own pods tolerate.
func toleratesAll(tols []corev1.Toleration, taints []corev1.Taint) bool {
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule || t.Key == TaintTenant {
			continue
		}
		ok := false
		for _, tol := range tols {
			if tol.ToleratesTaint(klog.Background(), &t, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// PlanOn plans set on the cluster c as `rung plan` would on a Topology of
// the same nodes: the set's own Topology objects are replaced by the
// cluster's nodes, nodes that are not Ready are down, and the replicas of
// prev (nil: none) stay where they are unless their node is gone or down.
func PlanOn(set *v1.Set, c Cluster, prev *scheduler.Result) (*scheduler.Result, []string, error) {
	s := *set
	s.Topologies = []v1.Topology{c.Topology}
	prob, err := scheduler.ProblemOf(&s, topology.DefaultRuntimes)
	if err != nil {
		return nil, nil, err
	}
	var notes []string
	for _, n := range c.Down {
		if i, ok := prob.Topology.Node(n); ok {
			prob.Topology.Nodes[i].Down = true
			notes = append(notes, "node "+n+" is not Ready: down")
		}
	}
	if prev != nil {
		notes = append(notes, prob.Keep(prev)...)
	}
	res, err := scheduler.Plan(prob, scheduler.Options{})
	return res, notes, err
}
