package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/rollout"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/server/wire"
)

// Rollouts (DESIGN §8): a workload whose template (what its replicas run:
// image, command, environment, health check…) changes while its placement
// fields stay the same moves to the new template step by step, as
// rollout.Next says from what the nodes report ready: old replicas are
// replaced in place, surge replicas take indices past spec.replicas for
// the time of the rollout and are placed by the scheduler like any replica
// (so hard spread and the tenancy invariant hold at every step). The state
// lives with the workload's placements in the store, so a control plane
// killed mid-rollout resumes it. A change of placement fields places the
// workload anew.

// rolloutDoc is a workload's rollout in progress, kept in its placementDoc.
type rolloutDoc struct {
	// Specs are the versions still running somewhere, by template.
	Specs map[string]v1.WorkloadSpec `json:"specs"`
	// Old maps each index below spec.replicas that still runs an older
	// version to that version's template.
	Old map[int]string `json:"old"`
	// Surge is how many surge replicas (indices spec.replicas…) exist.
	Surge   int       `json:"surge"`
	Started time.Time `json:"started"`
	// Blocked says why the rollout can't go on, when it can't.
	Blocked string `json:"blocked,omitempty"`
}

// historyEntry is one earlier version of a workload (rung rollout history).
type historyEntry struct {
	Template string          `json:"template"`
	Spec     v1.WorkloadSpec `json:"spec"`
	At       time.Time       `json:"at"`
}

// maxHistory bounds the versions kept per workload.
const maxHistory = 10

// templateHash identifies what a workload's replicas run: its spec but
// the replica count and the rollout settings.
func templateHash(s v1.WorkloadSpec) string {
	s.Replicas, s.Rollout = nil, v1.Rollout{}
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// limitsOf is a workload's spec.rollout with the defaults (0 and 1).
func limitsOf(r v1.Rollout) rollout.Limits {
	l := rollout.Limits{MaxUnavailable: 0, MaxSurge: 1}
	if r.MaxUnavailable != nil {
		l.MaxUnavailable = *r.MaxUnavailable
	}
	if r.MaxSurge != nil {
		l.MaxSurge = *r.MaxSurge
	}
	return l
}

// rolling is one workload's versions for one planner run.
type rolling struct {
	template string
	n        int
	// state is nil when no rollout is in progress.
	state   *rolloutDoc
	history []historyEntry
}

// templateOf is the template replica i runs.
func (r *rolling) templateOf(i int) string {
	if r.state != nil {
		if t, ok := r.state.Old[i]; ok {
			return t
		}
	}
	return r.template
}

// readyInfo is what a node reports of one replica for rollouts.
type readyInfo struct {
	template string
	ready    bool
}

// readiness is every reported replica's template and readiness, by ID.
type readiness map[string]readyInfo

// digest writes r in a stable order, so the planner plans again when a
// replica becomes ready or stops being so.
func (r readiness) digest(h interface{ Write([]byte) (int, error) }) {
	for _, id := range slices.Sorted(maps.Keys(r)) {
		fmt.Fprintf(h, "ready\x00%s\x00%s\x00%v\x00", id, r[id].template, r[id].ready)
	}
}

// readinessOf reads the nodes' reports: ready means running, healthy (or
// without a check) and on a node that is up.
func (n *nodes) readiness() readiness {
	rep := n.reports()
	out := readiness{}
	add := func(st wire.ReplicaState, up bool) {
		out[st.ID] = readyInfo{template: st.Template, ready: up && st.State == wire.ReplicaRunning &&
			(st.Health == wire.HealthHealthy || st.Health == wire.HealthNone)}
	}
	for node, m := range rep.byNode {
		for _, st := range m {
			add(st, rep.liveness[node] == wire.NodeUp)
		}
	}
	for _, st := range rep.local {
		if _, ok := out[st.ID]; !ok {
			add(st, true)
		}
	}
	return out
}

// rollouts decides this run's versions of every kept workload: the
// template each replica runs and how many surge replicas exist, taking
// one rollout step where one is in progress. docs are the stored plans of
// the workloads whose placements are kept; placed their placements.
func rollouts(set *v1.Set, docs map[string]placementDoc, ready readiness, now time.Time) map[string]*rolling {
	out := make(map[string]*rolling, len(set.Workloads))
	for _, w := range set.Workloads {
		key := w.Metadata.Tenant + "/" + w.Metadata.Name
		r := &rolling{template: templateHash(w.Spec), n: *w.Spec.Replicas}
		out[key] = r
		d, kept := docs[key]
		if !kept {
			continue // placed anew: every replica runs the current version
		}
		r.history = d.History
		prevT := d.Template
		var st *rolloutDoc
		if d.Rollout != nil {
			c := *d.Rollout
			c.Specs, c.Old = maps.Clone(c.Specs), maps.Clone(c.Old)
			st = &c
		}
		if st == nil && prevT != "" && prevT != r.template && d.Spec != nil {
			st = &rolloutDoc{Specs: map[string]v1.WorkloadSpec{prevT: *d.Spec}, Old: map[int]string{}, Started: now.UTC()}
			for _, p := range d.Placements {
				if p.Replica < r.n {
					st.Old[p.Replica] = prevT
				}
			}
			r.history = append(r.history, historyEntry{Template: prevT, Spec: *d.Spec, At: now.UTC()})
			if len(r.history) > maxHistory {
				r.history = r.history[len(r.history)-maxHistory:]
			}
		}
		if st == nil {
			continue
		}
		if st.Specs == nil {
			st.Specs = map[string]v1.WorkloadSpec{}
		}
		st.Specs[r.template] = w.Spec
		for i, t := range st.Old {
			if i >= r.n || t == r.template {
				delete(st.Old, i) // scaled away, or back on the current version
			}
		}
		r.state = st
		placed := map[int]bool{}
		for _, p := range d.Placements {
			placed[p.Replica] = true
		}
		var rs []rollout.Replica
		for i := range r.n + st.Surge {
			t := r.templateOf(i)
			info := ready[agent.ReplicaID(key, i)]
			rs = append(rs, rollout.Replica{Index: i, New: t == r.template, Ready: placed[i] && info.ready && info.template == t})
		}
		step := rollout.Next(r.n, limitsOf(w.Spec.Rollout), rs)
		for _, i := range step.Replace {
			delete(st.Old, i)
		}
		st.Surge, st.Blocked = step.Surge, step.Blocked
		if step.Done {
			r.state = nil
			continue
		}
		used := map[string]bool{r.template: true}
		for _, t := range st.Old {
			used[t] = true
		}
		maps.DeleteFunc(st.Specs, func(t string, _ v1.WorkloadSpec) bool { return !used[t] })
	}
	return out
}

// schedulerSet is set as the scheduler sees it: a rolling workload has
// its surge replicas too. set itself is left as stored.
func schedulerSet(set *v1.Set, rolls map[string]*rolling) *v1.Set {
	out := *set
	out.Workloads = slices.Clone(set.Workloads)
	for i := range out.Workloads {
		w := &out.Workloads[i]
		if r := rolls[w.Metadata.Tenant+"/"+w.Metadata.Name]; r != nil && r.state != nil && r.state.Surge > 0 {
			n := r.n + r.state.Surge
			w.Spec.Replicas = &n
		}
	}
	return &out
}

// markTemplates names on each placement the version it runs, and notes a
// rollout that waits for a surge replica that can't be placed.
func markTemplates(res *scheduler.Result, rolls map[string]*rolling) {
	for i := range res.Placements {
		p := &res.Placements[i]
		if r := rolls[p.Workload]; r != nil {
			p.Template = r.templateOf(p.Replica)
		}
	}
	for _, u := range res.Unplaced {
		if r := rolls[u.Workload]; r != nil && r.state != nil && u.Replica >= r.n && r.state.Blocked == "" {
			r.state.Blocked = "a surge replica can't be placed (" + strings.Join(u.Reasons, "; ") + "); set spec.rollout.maxUnavailable to replace replicas in place"
		}
	}
}

// templates is every version the replicas of rolls run, by template.
func templates(rolls map[string]*rolling) map[string]v1.WorkloadSpec {
	out := map[string]v1.WorkloadSpec{}
	for _, r := range rolls {
		if r.state != nil {
			maps.Copy(out, r.state.Specs)
		}
	}
	return out
}

// workloadRollout answers GET /v1/tenants/{tenant}/workloads/{name}/rollout.
func (s *Server) workloadRollout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, _, err := s.authorizePath(r, auth.Get, v1.KindWorkload)
	if err != nil {
		return err
	}
	key := tenant + "/" + name
	if err := s.workloadExists(ctx, tenant, name); err != nil {
		return err
	}
	pl, err := s.planner.current(ctx)
	if err != nil {
		return err
	}
	out := wire.Rollout{Workload: key, History: []wire.Revision{}}
	ro := pl.rollouts[key]
	if ro == nil {
		return newError(http.StatusConflict, wire.CodeConflict, "workload %s is not planned (it does not validate: see rung describe)", key)
	}
	out.Template, out.Replicas = ro.template, ro.n
	if st := ro.state; st != nil {
		out.Old, out.Surge, out.Started, out.Blocked = len(st.Old), st.Surge, st.Started, st.Blocked
	}
	for _, h := range ro.history {
		b, _ := json.Marshal(h.Spec)
		out.History = append(out.History, wire.Revision{Template: h.Template, At: h.At, Spec: b})
	}
	view, err := s.replicaView(ctx, principal(ctx))
	if err != nil {
		return err
	}
	for _, rp := range view {
		if rp.Workload != key || rp.Index >= ro.n || ro.templateOf(rp.Index) != ro.template {
			continue
		}
		out.Updated++
		if rp.Ready && rp.Template == ro.template {
			out.Ready++
		}
	}
	out.Done = ro.state == nil && out.Ready == ro.n
	writeJSON(w, http.StatusOK, out)
	return nil
}
