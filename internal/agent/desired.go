package agent

import (
	"fmt"
	"rung.dev/rung/internal/policy"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// ReplicaID names replica ord of TENANT/NAME on a node: "tenant-name-ord".
func ReplicaID(workload string, ord int) string {
	return strings.ReplaceAll(workload, "/", "-") + fmt.Sprintf("-%d", ord)
}

// FromPlan returns the replicas a node must run under plan res of set. With
// node == "" the node stands in for every node of the plan (one machine
// running a whole example, as `rung up` on a laptop does).
func FromPlan(set *v1.Set, res *scheduler.Result, node string) ([]replica.Spec, error) {
	return FromPlanWith(set, res, node, nil)
}

// FromPlanWith is FromPlan during rollouts: a placement whose Template is
// in templates runs that version of its workload's spec (an old replica
// not replaced yet), the others the workload's current spec.
func FromPlanWith(set *v1.Set, res *scheduler.Result, node string, templates map[string]v1.WorkloadSpec) ([]replica.Spec, error) {
	// The site's operator admission rules go with every replica, so the node
	// re-checks them with the final runtime spec (DESIGN §6).
	adm, err := policy.FromPolicies(set.Policies)
	if err != nil {
		return nil, fmt.Errorf("admission rules: %w", err)
	}
	var admission *policy.Config
	if len(adm.Rules) > 0 || adm.MaxImageAge != 0 {
		admission = &adm
	}
	noisyPolicy, err := NoisyPolicy(set.Policies)
	if err != nil {
		return nil, err
	}
	wl := map[string]*v1.Workload{}
	for i := range set.Workloads {
		w := &set.Workloads[i]
		wl[w.Metadata.Tenant+"/"+w.Metadata.Name] = w
	}
	images := map[string]*v1.ImagePolicy{}
	for _, t := range set.Tenants {
		if p := t.Spec.Images; len(p.Registries) > 0 || len(p.SignedBy) > 0 || p.BlockSeverity != "" {
			images[t.Metadata.Name] = &v1.ImagePolicy{
				Registries:    slices.Clone(p.Registries),
				SignedBy:      slices.Clone(p.SignedBy),
				BlockSeverity: p.BlockSeverity,
			}
		}
	}
	vols := map[string]*v1.Volume{}
	for i := range set.Volumes {
		v := &set.Volumes[i]
		vols[v.Metadata.Tenant+"/"+v.Metadata.Name] = v
	}
	var out []replica.Spec
	for _, p := range res.Placements {
		if node != "" && p.Node != node {
			continue
		}
		cur, ok := wl[p.Workload]
		if !ok {
			return nil, fmt.Errorf("placement of unknown workload %s", p.Workload)
		}
		w := cur
		if spec, ok := templates[p.Template]; ok && p.Template != "" {
			w = &v1.Workload{TypeMeta: cur.TypeMeta, Metadata: cur.Metadata, Spec: spec}
		}
		tier, err := tenancy.ParseTier(v1.Tier(p.Tier))
		if err != nil {
			return nil, fmt.Errorf("placement %s[%d]: %w", p.Workload, p.Replica, err)
		}
		var env []string
		for k, v := range w.Spec.Env {
			env = append(env, k+"="+v)
		}
		slices.Sort(env) // map order must not change the spec's hash
		netSpec, err := network.ForWorkload(set, p.Node, w)
		if err != nil {
			return nil, fmt.Errorf("placement %s[%d]: network: %w", p.Workload, p.Replica, err)
		}
		mounts, ok := volumeMounts(w, vols, p.Replica)
		if !ok {
			continue // a volume is gone: the plan leaves it unplaced next time
		}
		out = append(out, replica.Spec{
			ID:           ReplicaID(p.Workload, p.Replica),
			Tenant:       w.Metadata.Tenant,
			Tier:         tier,
			Image:        w.Spec.Image,
			Args:         append(append([]string{}, w.Spec.Command...), w.Spec.Args...),
			Env:          env,
			Resources:    topology.FromV1(w.Spec.Resources),
			Limits:       topology.LimitsFromV1(w.Spec.Resources),
			Noisy:        noisyPolicy,
			Capabilities: w.Spec.Capabilities,
			Images:       images[w.Metadata.Tenant],
			Admission:    admission,
			// Always is the default: left out, so the spec's hash (and the
			// running replicas) stay the same when it is spelled out.
			RestartPolicy: restartPolicy(w.Spec.RestartPolicy),
			Healthcheck:   healthcheck(w.Spec.Healthcheck),
			Template:      p.Template,
			Secrets:       secretMounts(w.Spec.Secrets),
			Network:       netSpec,
			Volumes:       mounts,
		})
	}
	return out, nil
}

func restartPolicy(p v1.RestartPolicy) v1.RestartPolicy {
	if p == v1.RestartAlways {
		return ""
	}
	return p
}

// healthcheck converts a validated spec.healthcheck (nil: the image's).
func healthcheck(h *v1.Healthcheck) *replica.Healthcheck {
	if h == nil {
		return nil
	}
	d := func(s string) time.Duration {
		v, _ := time.ParseDuration(s) // validated when applied
		return v
	}
	out := replica.Healthcheck{Command: slices.Clone(h.Command), Interval: d(h.Interval), Timeout: d(h.Timeout), StartPeriod: d(h.StartPeriod), Retries: h.Retries}.WithDefaults()
	return &out
}

func secretMounts(ms []v1.SecretMount) []replica.SecretMount {
	var out []replica.SecretMount
	for _, m := range ms {
		out = append(out, replica.SecretMount{Name: m.Name, MountPath: m.MountPath})
	}
	return out
}

// volumeMounts resolves replica ord's volumes: each instance's name, the
// Volume's uid and size. ok is false when a volume does not exist: the
// replica must not run without it.
func volumeMounts(w *v1.Workload, vols map[string]*v1.Volume, ord int) ([]replica.VolumeMount, bool) {
	var out []replica.VolumeMount
	for _, m := range w.Spec.Volumes {
		vol, found := vols[w.Metadata.Tenant+"/"+m.Name]
		if !found {
			return nil, false
		}
		uid := ""
		if vol.Status != nil {
			uid = vol.Status.UID
		}
		out = append(out, replica.VolumeMount{Name: v1.VolumeInstance(m, ord), UID: uid, MountPath: m.MountPath,
			ReadOnly: m.ReadOnly, Size: vol.Spec.SizeBytes()})
	}
	return out, true
}
