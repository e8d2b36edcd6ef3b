package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// admitWorkload checks a workload against what it depends on (its tenant
// and the topologies' levels) and its tenant's quota, and returns the ops
// that make the write fail if any of that changes before it commits: the
// tenant and topologies must be unchanged, and the tenant's guard, which
// every workload change bumps, too (so two concurrent applies cannot both
// fit a quota that has room for one).
func (s *Server) admitWorkload(ctx context.Context, w *v1.Workload, change *v1.Set, subj subject) ([]store.Op, *policy.Decision, error) {
	tenant := w.Metadata.Tenant
	tv, err := s.st(ctx).Get(ctx, tenantKey(tenant))
	if errors.Is(err, store.ErrNotFound) {
		he := notFound(v1.KindTenant, "", tenant)
		he.Msg += "; apply the Tenant first (an operator's job)"
		return nil, nil, he
	}
	if err != nil {
		return nil, nil, err
	}
	guard, err := s.guardOp(ctx, tenant)
	if err != nil {
		return nil, nil, err
	}
	set, revs, err := s.stored(ctx, "", kindTopology)
	if err != nil {
		return nil, nil, err
	}
	var t v1.Tenant
	if err := json.Unmarshal(tv.Data, &t); err != nil {
		return nil, nil, fmt.Errorf("decode %s: %w", tv.Key, err)
	}
	set.Tenants = []v1.Tenant{t}
	// The site's consent (a Policy's spec.network: egress, ports below
	// 1024) is part of what the workload is validated against.
	pols, _, err := s.stored(ctx, "", kindPolicy)
	if err != nil {
		return nil, nil, err
	}
	set.Policies = pols.Policies
	set.Merge(change)
	if err := validateOwn(set, subj); err != nil {
		return nil, nil, err
	}
	refOps, err := s.checkWorkloadRefs(ctx, w, subj) // crossrefs.go
	if err != nil {
		return nil, nil, err
	}
	if err := s.checkQuota(ctx, &t, w); err != nil {
		return nil, nil, err
	}
	// Secure by default, no opt-out: every finding rejects (DESIGN §6).
	// The built-in checks, the registry allow-list and the operator's
	// rules from the stored Policies (admission.go).
	eng, policyRevs, err := s.admissionEngine(ctx)
	if err != nil {
		return nil, nil, err
	}
	d := eng.Workload(policy.WorkloadInput{Tenant: t, Workload: *w, Now: s.now()})
	if !d.Allowed {
		return nil, nil, admissionError(w, &d)
	}
	ops := append([]store.Op{store.CheckOp(tv.Key, tv.Revision), guard}, refOps...)
	if len(revs) <= maxTopologyChecks {
		for key, rev := range revs {
			ops = append(ops, store.CheckOp(key, rev))
		}
	}
	// The Policies judged by must be the ones in force when it commits.
	if len(policyRevs) <= maxPolicyChecks {
		for key, rev := range policyRevs {
			ops = append(ops, store.CheckOp(key, rev))
		}
	}
	return ops, &d, nil
}

// maxTopologyChecks bounds the topologies a workload write checks are
// unchanged, to stay well inside store.MaxTxnOps; past it, a concurrent
// topology change is caught by the scheduler instead.
const maxTopologyChecks = 64

// guardOp bumps tenant's guard key, expecting it as it is now.
func (s *Server) guardOp(ctx context.Context, tenant string) (store.Op, error) {
	key := guardsDir + "/" + tenant
	data := []byte(`{}`)
	g, err := s.st(ctx).Get(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.PutOp(key, data, store.Create), nil
	case err != nil:
		return store.Op{}, fmt.Errorf("get %s: %w", key, err)
	}
	return store.PutOp(key, data, g.Revision), nil
}

// usage is what a tenant's workloads ask for in total.
type usage struct {
	cpu, memory resource.Quantity
	replicas    int64
}

func (u *usage) add(w *v1.Workload) {
	n := int64(v1.DefaultReplicas)
	if w.Spec.Replicas != nil {
		n = int64(*w.Spec.Replicas)
	}
	u.replicas += n
	for _, r := range []struct {
		q   *resource.Quantity
		sum *resource.Quantity
	}{{w.Spec.Resources.CPU, &u.cpu}, {w.Spec.Resources.Memory, &u.memory}} {
		if r.q == nil {
			continue
		}
		q := r.q.DeepCopy()
		q.Mul(n)
		r.sum.Add(q)
	}
}

// checkQuota refuses w if, with it replacing its stored version, the
// tenant's workloads would ask for more than the tenant's quota. A quota
// field left out (or zero replicas) is no limit.
func (s *Server) checkQuota(ctx context.Context, t *v1.Tenant, w *v1.Workload) error {
	q := t.Spec.Quota
	if q.CPU == nil && q.Memory == nil && q.Replicas == 0 {
		return nil
	}
	vals, _, err := s.st(ctx).List(ctx, workloadsDir+"/"+t.Metadata.Name)
	if err != nil {
		return err
	}
	var others, this usage
	for _, v := range vals {
		if v.Key == kindWorkload.key(t.Metadata.Name, w.Metadata.Name) {
			continue
		}
		var o v1.Workload
		if err := json.Unmarshal(v.Data, &o); err != nil {
			return fmt.Errorf("decode %s: %w", v.Key, err)
		}
		others.add(&o)
	}
	this.add(w)
	var over []string
	var fixes []string
	check := func(what string, used, asked, limit *resource.Quantity, field string) {
		if limit == nil {
			return
		}
		total := used.DeepCopy()
		total.Add(*asked)
		if total.Cmp(*limit) > 0 {
			over = append(over, fmt.Sprintf("%s %s > quota %s (other workloads %s, this one %s)",
				what, total.String(), limit.String(), used.String(), asked.String()))
			fixes = append(fixes, field)
		}
	}
	check("cpu", &others.cpu, &this.cpu, q.CPU, "spec.resources.cpu")
	check("memory", &others.memory, &this.memory, q.Memory, "spec.resources.memory")
	if q.Replicas > 0 && others.replicas+this.replicas > int64(q.Replicas) {
		over = append(over, fmt.Sprintf("replicas %d > quota %d (other workloads %d, this one %d)",
			others.replicas+this.replicas, q.Replicas, others.replicas, this.replicas))
	}
	if len(over) == 0 {
		return nil
	}
	fixes = append(fixes, "spec.replicas")
	return newError(http.StatusForbidden, wire.CodeQuota,
		"tenant %s quota exceeded: %s; lower %s, or ask an operator to raise the Tenant's spec.quota",
		t.Metadata.Name, strings.Join(over, "; "), strings.Join(fixes, " or "))
}
