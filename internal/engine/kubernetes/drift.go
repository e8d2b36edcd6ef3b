package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/server/wire"
)

// observe is the informers' handler for a change or deletion of something
// rung made: if rung still wants it, the worker checks it.
func (e *Engine) observe(kind string, obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := obj.(interface {
		GetNamespace() string
		GetName() string
	})
	if !ok {
		return
	}
	k := objKey{kind, m.GetNamespace(), m.GetName()}
	if kind == "Namespace" {
		k.Namespace = ""
	}
	if kind == "Pod" {
		e.poke() // status flows back
	}
	e.mu.Lock()
	_, want := e.desired[k]
	e.mu.Unlock()
	if want {
		e.queue.Add(k)
	}
}

func (e *Engine) worker(ctx context.Context) {
	for {
		k, quit := e.queue.Get()
		if quit {
			return
		}
		if err := e.check(ctx, k); err != nil {
			e.log.Warn("kubernetes: put back", "object", k.String(), "err", err)
			e.queue.AddRateLimited(k)
		} else {
			e.queue.Forget(k)
		}
		e.queue.Done(k)
	}
}

// check compares the live object with what rung applied; when someone
// changed or deleted it, the drift is audited and the object put back.
func (e *Engine) check(ctx context.Context, k objKey) error {
	e.mu.Lock()
	want := e.desired[k]
	e.mu.Unlock()
	if want == nil {
		return nil
	}
	diffs, err := e.diff(k, want)
	if err != nil || len(diffs) == 0 {
		return err
	}
	details, _ := json.Marshal(map[string]any{"changed": diffs})
	e.record(ctx, audit.Record{Actor: "kubernetes", Tenant: want.GetLabels()[LabelTenantOf], Action: "drift", Object: k.String(), Details: details})
	if diffs[0] == "being deleted" {
		return fmt.Errorf("%s is being deleted; will apply again", k)
	}
	return e.apply(ctx, want)
}

// diff compares the informer cache's copy of k with want: nil when it
// holds everything rung sets, "deleted" when it is gone, "being deleted".
// Kinds without an informer always differ (they are applied).
func (e *Engine) diff(k objKey, want *unstructured.Unstructured) ([]string, error) {
	get := e.listers[k.Kind]
	if get == nil {
		return []string{"not watched"}, nil
	}
	live, err := get(k.Namespace, k.Name)
	switch {
	case apierrors.IsNotFound(err):
		return []string{"deleted"}, nil
	case err != nil:
		return nil, err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(live)
	if err != nil {
		return nil, err
	}
	if md, ok := u["metadata"].(map[string]any); ok && md["deletionTimestamp"] != nil {
		return []string{"being deleted"}, nil
	}
	// Typed objects out of a cache carry no apiVersion and kind.
	u["apiVersion"], u["kind"] = want.GetAPIVersion(), want.GetKind()
	return Subset("", want.Object, u), nil
}

// Subset lists where live differs from want, looking only at what want
// sets (the apiserver adds defaults and status; those are not drift).
func Subset(path string, want, live any) []string {
	switch w := want.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return []string{path + ": missing"}
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			if w[k] == nil {
				continue
			}
			out = append(out, Subset(path+"."+k, w[k], l[k])...)
		}
		return out
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(w) {
			return []string{fmt.Sprintf("%s: want %d item(s)", path, len(w))}
		}
		var out []string
		for i := range w {
			out = append(out, Subset(path+"["+strconv.Itoa(i)+"]", w[i], l[i])...)
		}
		return out
	default:
		if reflect.DeepEqual(want, live) || fmt.Sprint(want) == fmt.Sprint(live) {
			return nil
		}
		return []string{fmt.Sprintf("%s: %v, want %v", path, live, want)}
	}
}

// States are the replicas' states read off their pods (issue 7's fields),
// for rung's replica status. Only the pods of the last applied plan count:
// a replica re-placed off a NotReady node has its old pod terminating
// there, with the same replica ID, until its kubelet confirms.
func (e *Engine) States() []wire.ReplicaState {
	pods, _ := e.own.Core().V1().Pods().Lister().List(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}))
	e.mu.Lock()
	out := make([]wire.ReplicaState, 0, len(pods))
	for _, p := range pods {
		if _, ok := e.desired[objKey{"Pod", p.Namespace, p.Name}]; ok {
			out = append(out, PodState(p))
		}
	}
	e.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// PodState maps a pod's status to a replica's, as a kubelet reports it:
// phase to state, the Ready condition to readiness (a running pod that is
// not Ready has no health verdict yet), container restarts, a waiting
// container's reason (CrashLoopBackOff, ImagePullBackOff) as the last
// error, the last termination's exit code.
func PodState(p *corev1.Pod) wire.ReplicaState {
	tenant := p.Labels[LabelTenantOf]
	n, _ := strconv.Atoi(p.Labels[LabelReplica])
	st := wire.ReplicaState{
		ID:     agent.ReplicaID(tenant+"/"+p.Labels[LabelWorkload], n),
		Tenant: tenant,
		Tier:   p.Labels[LabelTier],
	}
	st.Health = wire.HealthNone
	switch p.Status.Phase {
	case corev1.PodRunning:
		st.Status, st.State = "running", wire.ReplicaRunning
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
				st.Health = wire.HealthStarting
			}
		}
	case corev1.PodSucceeded:
		st.Status, st.State = "stopped", wire.ReplicaSucceeded
	case corev1.PodFailed:
		st.Status, st.State = "stopped", wire.ReplicaFailed
		st.LastError = p.Status.Message
	default:
		st.Status, st.State = "created", wire.ReplicaPending
	}
	if p.DeletionTimestamp != nil {
		st.State = wire.ReplicaTerminating
	}
	if p.Status.StartTime != nil {
		st.StartedAt = p.Status.StartTime.Time
	}
	for _, cs := range p.Status.ContainerStatuses {
		st.Restarts += int(cs.RestartCount)
		if w := cs.State.Waiting; w != nil && p.Status.Phase != corev1.PodPending {
			st.State, st.LastError = wire.ReplicaRestarting, w.Reason+": "+w.Message
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			code := int(t.ExitCode)
			st.ExitCode, st.FinishedAt = &code, t.FinishedAt.Time
		}
	}
	return st
}
