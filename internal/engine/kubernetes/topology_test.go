package kubernetes

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "rung.dev/rung/api/v1"
)

func node(name string, l map[string]string, ready bool, taints ...corev1.Taint) corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func TestReadCluster(t *testing.T) {
	nodes := []corev1.Node{
		node("a", map[string]string{LabelRegion: "eu", LabelZone: "z1", "rung.dev/datacenter": "dc1", "rung.dev/rack": "r1", "runtime.rung.dev/kata": "true"}, true),
		node("b", map[string]string{"rung.dev/building": "north"}, false),
		node("c", nil, true),
		node("d", map[string]string{LabelTenant: "acme", "rung.dev/rack": "r2"}, true, corev1.Taint{Key: TaintTenant, Value: "acme", Effect: corev1.TaintEffectNoSchedule}),
		node("e", map[string]string{LabelTenant: "acme", "rung.dev/rack": "r2"}, true),
	}
	classes := []nodev1.RuntimeClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "runc"}, Handler: "runc"},
		{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc", Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"rung.dev/rack": "r1"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata-qemu", Scheduling: &nodev1.Scheduling{NodeSelector: map[string]string{"runtime.rung.dev/kata": "true"}}},
	}
	c := ReadCluster(nodes, classes, nil)
	got := map[string]any{}
	for _, n := range c.Topology.Spec.Nodes {
		got[n.Name] = []any{n.Domains, n.Runtimes, n.Tenant}
	}
	want := map[string]any{
		"a": []any{map[string]string{"region": "eu", "datacenter": "dc1", "rack": "r1"}, []v1.Tier{"container", "sandbox", "vm"}, ""},
		"b": []any{map[string]string{"building": "north"}, []v1.Tier{"container"}, ""},
		"c": []any{map[string]string(nil), []v1.Tier{"container"}, ""},
		"d": []any{map[string]string{"rack": "r2"}, []v1.Tier{"container", "host"}, "acme"},
		"e": []any{map[string]string{"rack": "r2"}, []v1.Tier{"container"}, ""},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"b"}, c.Down); d != "" {
		t.Errorf("down (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"building"}, c.Topology.Spec.Levels); d != "" {
		t.Errorf("levels (-want +got):\n%s", d)
	}
	warn := strings.Join(c.Warnings, "\n")
	if !strings.Contains(warn, "node c has no failure-domain labels") || !strings.Contains(warn, "node e is labelled rung.dev/tenant=acme but not tainted") {
		t.Errorf("warnings: %s", warn)
	}
	if c.Classes["a"][v1.TierVM] != "kata" || c.Classes["a"][v1.TierSandbox] != "gvisor" {
		t.Errorf("classes of a: %v", c.Classes["a"])
	}
}

func TestSubset(t *testing.T) {
	want := map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "1"}}, "spec": map[string]any{"a": []any{int64(1)}}}
	live := map[string]any{"metadata": map[string]any{"labels": map[string]any{"x": "1", "y": "2"}, "uid": "u"}, "spec": map[string]any{"a": []any{int64(1)}, "b": true}}
	if d := Subset("", want, live); len(d) != 0 {
		t.Errorf("defaults and extra fields count as drift: %v", d)
	}
	live["metadata"].(map[string]any)["labels"].(map[string]any)["x"] = "2"
	if d := Subset("", want, live); len(d) != 1 || !strings.Contains(d[0], ".metadata.labels.x") {
		t.Errorf("changed label not seen: %v", d)
	}
}
