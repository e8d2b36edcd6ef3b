package kubernetes

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"rung.dev/rung/internal/server/wire"
)

// TestPodState: what a kubelet writes in a pod's status becomes the
// replica's status.
func TestPodState(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC))
	labels := map[string]string{LabelTenantOf: "biology", LabelWorkload: "web", LabelReplica: "2", LabelTier: "sandbox"}
	pod := func(phase corev1.PodPhase, ready corev1.ConditionStatus, cs ...corev1.ContainerStatus) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Status: corev1.PodStatus{Phase: phase, ContainerStatuses: cs}}
		if ready != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
		}
		if phase != corev1.PodPending {
			p.Status.StartTime = &at
		}
		return p
	}
	one := 1
	base := wire.ReplicaState{ID: "biology-web-2", Tenant: "biology", Tier: "sandbox"}
	with := func(s wire.ReplicaStatus, status string) wire.ReplicaState {
		b := base
		b.Status, b.ReplicaStatus = status, s
		return b
	}
	terminating := pod(corev1.PodRunning, corev1.ConditionTrue)
	terminating.DeletionTimestamp = &at
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want wire.ReplicaState
	}{
		{"pending", pod(corev1.PodPending, ""), with(wire.ReplicaStatus{State: wire.ReplicaPending, Health: wire.HealthNone}, "created")},
		{"running and ready", pod(corev1.PodRunning, corev1.ConditionTrue, corev1.ContainerStatus{RestartCount: 2}),
			with(wire.ReplicaStatus{State: wire.ReplicaRunning, Health: wire.HealthNone, Restarts: 2, StartedAt: at.Time}, "running")},
		{"running, not ready yet", pod(corev1.PodRunning, corev1.ConditionFalse),
			with(wire.ReplicaStatus{State: wire.ReplicaRunning, Health: wire.HealthStarting, StartedAt: at.Time}, "running")},
		{"crash loop", pod(corev1.PodRunning, corev1.ConditionFalse, corev1.ContainerStatus{RestartCount: 3,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: at}}}),
			with(wire.ReplicaStatus{State: wire.ReplicaRestarting, Health: wire.HealthStarting, Restarts: 3, StartedAt: at.Time,
				LastError: "CrashLoopBackOff: back-off", ExitCode: &one, FinishedAt: at.Time}, "running")},
		{"failed", func() *corev1.Pod { p := pod(corev1.PodFailed, ""); p.Status.Message = "evicted"; return p }(),
			with(wire.ReplicaStatus{State: wire.ReplicaFailed, Health: wire.HealthNone, StartedAt: at.Time, LastError: "evicted"}, "stopped")},
		{"succeeded", pod(corev1.PodSucceeded, ""), with(wire.ReplicaStatus{State: wire.ReplicaSucceeded, Health: wire.HealthNone, StartedAt: at.Time}, "stopped")},
		{"terminating", terminating, with(wire.ReplicaStatus{State: wire.ReplicaTerminating, Health: wire.HealthNone, StartedAt: at.Time}, "running")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, PodState(tc.pod)); d != "" {
				t.Errorf("PodState (-want +got):\n%s", d)
			}
		})
	}
}

// TestDiffCachedCopy: the informer cache's typed copies carry no
// apiVersion and kind; a pod as rung wants it, plus what the apiserver and
// the kubelet add, is no drift, while a changed label is.
func TestDiffCachedCopy(t *testing.T) {
	want := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-0-abc", Namespace: "rung-t", Labels: map[string]string{LabelTier: "sandbox"}},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "main", Image: "app:1"}}}}
	u, err := toUnstructured(want)
	if err != nil {
		t.Fatal(err)
	}
	live := want.DeepCopy()
	live.TypeMeta = metav1.TypeMeta{}
	live.UID, live.ResourceVersion = "u1", "42"
	live.Spec.SchedulerName, live.Spec.DNSPolicy = "default-scheduler", corev1.DNSClusterFirst
	live.Status.Phase = corev1.PodRunning
	e := &Engine{listers: map[string]func(ns, name string) (runtime.Object, error){
		"Pod": func(string, string) (runtime.Object, error) { return live, nil },
	}}
	k := objKey{"Pod", "rung-t", "web-0-abc"}
	if d, err := e.diff(k, u); err != nil || len(d) != 0 {
		t.Fatalf("diff of the cached copy = %v, %v; want none", d, err)
	}
	live.Labels[LabelTier] = "container"
	d, err := e.diff(k, u)
	if err != nil || len(d) != 1 || !strings.Contains(d[0], "rung.dev/tier") {
		t.Fatalf("diff after a label change = %v, %v; want the tier label", d, err)
	}
}
