package kubernetes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/cli"
	"rung.dev/rung/internal/client"
	kube "rung.dev/rung/internal/engine/kubernetes"
	"rung.dev/rung/internal/engine/kubernetes/kubetest"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/testio"
)

// rungCLI runs the rung command line in this process.
func rungCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// upKube runs `rung up --backend kubernetes --kubeconfig F` in this process
// as a user does and waits until its API is ready; the client config goes
// where RUNG_CONFIG says, so that the other commands find it.
func upKube(t *testing.T, kubeconfig string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	t.Setenv(client.ConfigEnv, cfgPath)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testio.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Execute(ctx, []string{"up", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0",
			"--backend", "kubernetes", "--kubeconfig", kubeconfig}, &out, &errb)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rung up's log:\n%s", errb.String())
		}
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("rung up exited %d: %s", code, errb.String())
			}
		case <-time.After(deadline):
			t.Errorf("rung up did not shut down within %v", deadline)
		}
	})
	poll(t, func() error {
		select {
		case code := <-done:
			t.Fatalf("rung up exited %d: %s", code, errb.String())
		default:
		}
		cfg, err := client.LoadConfig(cfgPath)
		if err != nil {
			return err
		}
		resp, err := http.Get(cfg.Server + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	})
	t.Logf("rung up: %s", out.String())
}

// replicasVia reads `rung get replicas -o json`, by TENANT/NAME[INDEX].
func replicasVia(t *testing.T) map[string]wire.Replica {
	t.Helper()
	code, out, errOut := rungCLI(t, "get", "replicas", "-o", "json")
	if code != 0 {
		t.Fatalf("rung get replicas: exit %d: %s", code, errOut)
	}
	var rs wire.Replicas
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("rung get replicas -o json: %v: %s", err, out)
	}
	m := map[string]wire.Replica{}
	for _, r := range rs.Items {
		m[fmt.Sprintf("%s[%d]", r.Workload, r.Index)] = r
	}
	return m
}

func podKey(p corev1.Pod) string {
	return fmt.Sprintf("%s/%s[%s]", p.Labels[kube.LabelTenantOf], p.Labels[kube.LabelWorkload], p.Labels[kube.LabelReplica])
}

// livePods are rung's pods not being deleted, by replica.
func livePods(t *testing.T, c *kubetest.Cluster, tenants []string) map[string]corev1.Pod {
	t.Helper()
	m := map[string]corev1.Pod{}
	for _, tn := range tenants {
		for _, p := range rungPods(t, c.Client, kube.Namespace(tn)) {
			m[podKey(p)] = p
		}
	}
	return m
}

// kubelet sets a pod's status as a kubelet would: running and Ready, or
// crash-looping (waiting in CrashLoopBackOff after exits with code 1).
func kubelet(t *testing.T, c *kubetest.Cluster, p corev1.Pod, restarts int32, crashing bool) {
	t.Helper()
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	ready := corev1.ConditionTrue
	cs := corev1.ContainerStatus{Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image, RestartCount: restarts, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}
	if crashing {
		ready = corev1.ConditionFalse
		cs.Ready = false
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}}
		cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", FinishedAt: now}}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: now},
	}
	if _, err := c.Client.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), &p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubelet: pod %s status: %v", p.Name, err)
	}
}

// testRungUp is the user's path end to end: `rung up --backend kubernetes
// --kubeconfig F`, `rung apply -f examples/university` (its Topology
// refused: the nodes are the cluster's), pods pinned where `rung plan`
// puts the replicas, pod status written as a kubelet would flowing back
// into `rung get replicas` and `rung describe`, and a node set NotReady
// re-planned.
func testRungUp(t *testing.T, c *kubetest.Cluster) {
	const dir = "../../../examples/university"
	set, err := v1.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tenants []string
	for _, tn := range set.Tenants {
		tenants = append(tenants, tn.Metadata.Name)
	}
	for _, top := range set.Topologies {
		addNodes(t, c.Client, top)
	}
	code, out, errOut := rungCLI(t, "plan", "-f", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("rung plan: exit %d: %s", code, errOut)
	}
	var plan scheduler.Result
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, p := range plan.Placements {
		want[fmt.Sprintf("%s[%d]", p.Workload, p.Replica)] = p.Node
	}

	// After rung up stops: its pods go at once (no kubelet confirms a
	// graceful delete here), so that later tests may reuse their names.
	t.Cleanup(func() {
		zero := int64(0)
		for _, tn := range tenants {
			ns := kube.Namespace(tn)
			_ = c.Client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		}
	})
	upKube(t, c.Kubeconfig(t, kubetest.AdminToken))
	code, _, errOut = rungCLI(t, "apply", "-f", dir)
	if code == 0 || !strings.Contains(errOut, "Topology campus") || !strings.Contains(errOut, "label the nodes") || !strings.Contains(errOut, "1 of") {
		t.Fatalf("rung apply -f %s: exit %d, want the Topology alone refused: %s", dir, code, errOut)
	}
	t.Logf("rung apply: %s", errOut)

	// Pods pinned exactly where rung plan puts the replicas.
	var pods map[string]corev1.Pod
	poll(t, func() error {
		pods = livePods(t, c, tenants)
		if len(pods) != len(want) {
			return fmt.Errorf("%d pods, rung plan places %d replicas", len(pods), len(want))
		}
		return nil
	})
	for key, p := range pods {
		if node, ok := want[key]; !ok || p.Spec.NodeName != node {
			t.Errorf("pod %s (%s) on %q, rung plan puts it on %q", p.Name, key, p.Spec.NodeName, node)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	rs := replicasVia(t)
	for key, node := range want {
		if r := rs[key]; r.Node != node || r.State != wire.ReplicaPending || r.Ready {
			t.Errorf("rung get replicas %s: node %q state %q ready %v, want %q pending, not ready (no kubelet yet)", key, r.Node, r.State, r.Ready, node)
		}
	}

	// Play kubelet: every pod running and Ready, one restarted twice, one
	// crash-looping.
	var keys []string
	for key := range pods {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	healthy, crashing := keys[0], keys[1]
	for _, key := range keys {
		switch key {
		case healthy:
			kubelet(t, c, pods[key], 2, false)
		case crashing:
			kubelet(t, c, pods[key], 3, true)
		default:
			kubelet(t, c, pods[key], 0, false)
		}
	}
	poll(t, func() error {
		rs := replicasVia(t)
		for _, key := range keys {
			r := rs[key]
			var bad bool
			switch key {
			case healthy:
				bad = r.State != wire.ReplicaRunning || !r.Ready || r.Restarts != 2
			case crashing:
				bad = r.State != wire.ReplicaRestarting || r.Ready || r.Restarts != 3 || r.ExitCode == nil || *r.ExitCode != 1 ||
					!strings.Contains(r.LastError, "CrashLoopBackOff")
			default:
				bad = r.State != wire.ReplicaRunning || !r.Ready || r.Restarts != 0
			}
			if bad {
				return fmt.Errorf("replica %s: state %q ready %v restarts %d exit %v error %q: pod status not flowed back yet",
					key, r.State, r.Ready, r.Restarts, r.ExitCode, r.LastError)
			}
		}
		return nil
	})
	wl, _, _ := strings.Cut(crashing, "[")
	code, out, errOut = rungCLI(t, "describe", "workload", wl)
	if code != 0 || !strings.Contains(out, "CrashLoopBackOff") || !strings.Contains(out, wire.ReplicaRestarting) {
		t.Fatalf("rung describe workload %s: exit %d, want the crash-looping replica: %s%s", wl, code, out, errOut)
	}

	// A node goes NotReady: its replicas are re-placed, the others stay.
	lost := pods[healthy].Spec.NodeName
	n, err := c.Client.CoreV1().Nodes().Get(context.Background(), lost, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status, n.Status.Conditions[i].Reason = corev1.ConditionUnknown, "NodeStatusUnknown"
		}
	}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, func() error {
		rs := replicasVia(t)
		now := livePods(t, c, tenants)
		for key, node := range want {
			r, p := rs[key], now[key]
			switch {
			case node == lost && (r.Node == lost || r.Node == ""):
				return fmt.Errorf("replica %s still planned on NotReady node %s (%q)", key, lost, r.Node)
			case node == lost && p.Spec.NodeName != r.Node:
				return fmt.Errorf("replica %s re-planned on %s, its pod is on %q", key, r.Node, p.Spec.NodeName)
			case node == lost && r.State != wire.ReplicaPending:
				return fmt.Errorf("replica %s re-planned on %s: state %q, want pending (the new pod's status)", key, r.Node, r.State)
			case node != lost && (r.Node != node || p.Spec.NodeName != node):
				return fmt.Errorf("replica %s moved from %s to %s (pod on %s), want it left where it was", key, node, r.Node, p.Spec.NodeName)
			}
		}
		return nil
	})
}
