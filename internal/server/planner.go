package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/network"
	"rung.dev/rung/internal/scheduler"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/tenancy"
)

// placementDoc is the stored plan of one workload, at
// /placements/TENANT/NAME. Placements are kept across plans (replicas do
// not move) while the workload's revision is the one they were made for,
// or while only fields that don't bear on placement changed (image,
// command, environment, replica count, restart policy, health check,
// rollout): scaling keeps the replicas where they are, and a new image
// restarts them in place. A workload whose placement fields changed is
// placed anew.
type placementDoc struct {
	WorkloadRevision int64 `json:"workloadRevision"`
	// PlacementHash is placementHash of the workload it was made for.
	PlacementHash string `json:"placementHash,omitempty"`
	// Template is the version of the workload the replicas run now (and
	// Spec that version's spec), Rollout the move to it when one is in
	// progress, History the earlier versions (rollouts.go).
	Template   string                `json:"template,omitempty"`
	Spec       *v1.WorkloadSpec      `json:"spec,omitempty"`
	Rollout    *rolloutDoc           `json:"rollout,omitempty"`
	History    []historyEntry        `json:"history,omitempty"`
	Placements []scheduler.Placement `json:"placements"`
	Unplaced   []scheduler.Unplaced  `json:"unplaced"`
}

// planner runs the scheduler over everything stored and keeps the result
// in the store, one placementDoc per workload.
type planner struct {
	store    store.Store
	runtimes tenancy.Set
	metrics  *metrics
	log      *slog.Logger
	// down lists the nodes to plan as lost (nil: none); recheck, when
	// positive, is how often run plans again for a change of down.
	down    func() []string
	recheck time.Duration
	// detected returns what the agents detect (nil: no reports, every
	// node offers what its manifest lists).
	detected func() runtimeReports
	// ready returns what nodes report ready (nil: nothing), for rollouts.
	ready func() readiness
	// cluster, when set, is the topology and its down nodes read off a
	// Kubernetes cluster; stored Topology objects are then ignored.
	cluster func() (v1.Topology, []string)

	mu     sync.Mutex
	inputs [sha256.Size]byte // digest of the keys and revisions planned
	// moveVals are the stored noisy moves (noisy.go) of this plan.
	moveVals []store.Value
	last     plan // what inputs planned to
	// term is this server's leadership (nil: it follows): only a leader
	// plans and writes the plan, every write fenced by its term; a
	// follower serves the plan the leader stored (leader.go).
	term *leader.Term
	// replan is what the run loop calls to plan (nil: current; tests
	// count the calls).
	replan func(context.Context) error
}

// lead makes the planner plan and store as term's leader (nil: follow).
func (p *planner) lead(term *leader.Term) {
	p.mu.Lock()
	p.term = term
	p.inputs = [sha256.Size]byte{} // plan afresh under the new role
	p.mu.Unlock()
}

func newPlanner(st store.Store, runtimes tenancy.Set, m *metrics, log *slog.Logger) *planner {
	return &planner{store: st, runtimes: runtimes, metrics: m, log: log}
}

// plan is one consistent view: the result, the tenants it covers and the
// objects it was planned from.
type plan struct {
	result  *scheduler.Result
	tenants []string
	set     *v1.Set
	// offers names what each node offered the scheduler (Node.Offers);
	// local is true when rung up's own agent stood for the nodes without
	// an agent of their own.
	offers map[string]string
	local  bool
	// templates are the specs of older versions still running (rollouts).
	templates map[string]v1.WorkloadSpec
	// rollouts are the workloads' rollout state, by TENANT/NAME.
	rollouts map[string]*rolling
	// published are the workloads' published ports, by TENANT/NAME
	// (network.Published), made once per plan rather than per replica view.
	published map[string][]string
}

// current returns the plan of what is stored now, planning again only if
// some object changed since the last plan.
func (p *planner) current(ctx context.Context) (plan, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := &v1.Set{}
	wlRevs := map[string]int64{} // TENANT/NAME → revision
	h := sha256.New()
	// Objects are decoded only when the plan is made again (below), but
	// for the topologies: what agents report is looked at by node.
	var later []store.Value
	var laterKinds []kind
	for _, k := range kinds {
		vals, _, err := p.store.List(ctx, k.dir)
		if err != nil {
			return plan{}, fmt.Errorf("plan: list %s: %w", k.dir, err)
		}
		for _, v := range vals {
			if k.name == v1.KindTopology {
				if err := addObject(set, k, v.Data); err != nil {
					return plan{}, fmt.Errorf("plan: decode %s: %w", v.Key, err)
				}
			} else {
				later, laterKinds = append(later, v), append(laterKinds, k)
			}
			h.Write([]byte(v.Key))
			h.Write(binary.AppendVarint(nil, v.Revision))
			if k.name == v1.KindWorkload {
				wlRevs[strings.TrimPrefix(v.Key, k.dir+"/")] = v.Revision
			}
		}
	}
	moveVals, _, err := p.store.List(ctx, movesDir)
	if err != nil {
		return plan{}, fmt.Errorf("plan: list %s: %w", movesDir, err)
	}
	for _, v := range moveVals {
		h.Write([]byte(v.Key))
		h.Write(binary.AppendVarint(nil, v.Revision))
	}
	p.moveVals = moveVals
	var down []string
	if p.down != nil {
		down = p.down()
	}
	if p.cluster != nil {
		// The cluster's nodes are the topology (DESIGN §14).
		top, cdown := p.cluster()
		set.Topologies = []v1.Topology{top}
		b, _ := json.Marshal(top)
		h.Write(b)
		down = append(down, cdown...)
	}
	for _, n := range down {
		h.Write([]byte("down\x00" + n + "\x00"))
	}
	var reports runtimeReports
	if p.detected != nil {
		reports = p.detected().only(topologyNodes(set))
	}
	reports.digest(h)
	var ready readiness
	if p.ready != nil {
		ready = p.ready()
		ready.digest(h)
	}
	// A follower's plan is the stored one: it changes with it.
	var docs map[string]store.Value
	if p.term == nil {
		var err error
		if docs, err = p.storedDocs(ctx); err != nil {
			return plan{}, err
		}
		for _, k := range slices.Sorted(maps.Keys(docs)) {
			h.Write([]byte("placement\x00" + k + "\x00"))
			h.Write(binary.AppendVarint(nil, docs[k].Revision))
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if p.last.result != nil && sum == p.inputs {
		return p.last, nil
	}
	for i, v := range later {
		if err := addObject(set, laterKinds[i], v.Data); err != nil {
			return plan{}, fmt.Errorf("plan: decode %s: %w", v.Key, err)
		}
	}
	if p.term != nil {
		var err error
		if docs, err = p.storedDocs(ctx); err != nil {
			return plan{}, err
		}
	}
	bound, err := readBindings(ctx, p.store) // volumes.go
	if err != nil {
		return plan{}, fmt.Errorf("plan: volume bindings: %w", err)
	}
	start := time.Now()
	hashes := placementHashes(set)
	res, offers, rolls, err := p.compute(set, docs, wlRevs, hashes, down, reports, ready, bound)
	if err != nil {
		return plan{}, err
	}
	if p.term == nil {
		p.stored(res, set, docs, wlRevs)
	}
	p.metrics.runs.Inc()
	p.metrics.planTime.Observe(time.Since(start).Seconds())
	byTier := map[string]int{}
	for _, pl := range res.Placements {
		byTier[pl.Tier]++
	}
	p.metrics.setPlan(byTier, len(res.Unplaced))
	if p.term != nil {
		// Bindings before any node makes the volume.
		if err := p.saveBindings(ctx, res, set, bound); err != nil {
			return plan{}, fmt.Errorf("plan: bind volumes: %w", err)
		}
		if err := p.save(ctx, res, docs, wlRevs, hashes, set, rolls, p.term.Fence()); err != nil {
			// The plan is still right; the next run writes it again (or,
			// if the term ended, the next leader plans).
			p.log.Warn("plan: store placements", "err", err)
			sum = [sha256.Size]byte{}
		}
	}
	tenants := make([]string, 0, len(set.Tenants))
	for _, t := range set.Tenants {
		tenants = append(tenants, t.Metadata.Name)
	}
	p.inputs = sum
	p.last = plan{result: res, tenants: tenants, set: set, offers: offers, local: reports.hasAll, templates: templates(rolls), rollouts: rolls,
		published: network.Published(set)}
	return p.last, nil
}

// storedDocs reads the stored plan, by workload key TENANT/NAME.
func (p *planner) storedDocs(ctx context.Context) (map[string]store.Value, error) {
	vals, _, err := p.store.List(ctx, placementsDir)
	if err != nil {
		return nil, fmt.Errorf("plan: list %s: %w", placementsDir, err)
	}
	docs := make(map[string]store.Value, len(vals))
	for _, v := range vals {
		docs[strings.TrimPrefix(v.Key, placementsDir+"/")] = v
	}
	return docs, nil
}

// compute plans set, keeping the stored placements of unchanged
// workloads. A workload that no longer validates (say its spread level
// was removed from the topology) is left unplaced with the reason. The
// nodes in down are lost (DESIGN §3): their replicas are re-placed, the
// others stay where they are, and Result.Problems says what can no
// longer be met. Each node offers only the tiers its agent reports it can
// run (reports); a replica on a tier its node lost is placed again. It
// also returns what each node offered (Node.Offers), by name.
func (p *planner) compute(set *v1.Set, docs map[string]store.Value, wlRevs map[string]int64, hashes map[string]string, down []string, reports runtimeReports, ready readiness, bound map[string]VolumeBinding) (*scheduler.Result, map[string]string, map[string]*rolling, error) {
	set.ApplyDefaults()
	var broken []scheduler.Unplaced
	if err := set.Validate(); err != nil {
		bad := map[string][]string{}
		for _, e := range unwrapAll(err) {
			fe, ok := errors.AsType[*v1.FieldError](e)
			if !ok || fe.Kind != v1.KindWorkload {
				return nil, nil, nil, fmt.Errorf("plan: stored objects do not validate: %w", err)
			}
			bad[fe.Name] = append(bad[fe.Name], e.Error())
		}
		kept := set.Workloads[:0]
		for _, w := range set.Workloads {
			key := w.Metadata.Tenant + "/" + w.Metadata.Name
			if reasons, ok := bad[key]; ok {
				for r := range *w.Spec.Replicas {
					broken = append(broken, scheduler.Unplaced{Workload: key, Replica: r, Reasons: reasons})
				}
				continue
			}
			kept = append(kept, w)
		}
		set.Workloads = kept
	}
	rules, err := tenancy.FromPolicies(set.Policies)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("plan: policies: %w", err)
	}
	// The stored plans of the workloads whose placements are kept: their
	// replicas stay where they are, and their rollouts go on.
	prev := &scheduler.Result{}
	keptDocs := map[string]placementDoc{}
	for key, v := range docs {
		var d placementDoc
		if err := json.Unmarshal(v.Data, &d); err != nil {
			p.log.Warn("plan: unreadable stored placements; placing again", "key", v.Key, "err", err)
			continue
		}
		if rev, ok := wlRevs[key]; ok && (rev == d.WorkloadRevision || d.PlacementHash != "" && d.PlacementHash == hashes[key]) {
			prev.Placements = append(prev.Placements, d.Placements...)
			keptDocs[key] = d
		}
	}
	rolls := rollouts(set, keptDocs, ready, time.Now())
	prob, err := scheduler.NewProblem(schedulerSet(set, rolls), rules, p.runtimes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("plan: %w", err)
	}
	for _, name := range down {
		i, ok := prob.Topology.Node(name)
		if !ok {
			continue // an agent for a node no topology lists
		}
		level := "host"
		if prob.Topology.Nodes[i].VM {
			level = "vm"
		}
		if _, err := prob.Topology.MarkDown(level, name); err != nil {
			return nil, nil, nil, fmt.Errorf("plan: node %s down: %w", name, err)
		}
	}
	boundNodes := bindingNodes(set, bound)
	prob.BindVolumes(boundNodes) // volumes.go
	names := make([]string, len(prob.Topology.Nodes))
	for i := range prob.Topology.Nodes {
		names[i] = prob.Topology.Nodes[i].Name
	}
	prob.SetDisk(volumeDisks(set, boundNodes, reports.disks, names)) // volumedisk.go
	if notes := prob.Topology.Detected(reports.report); len(notes) > 0 {
		p.log.Info("plan with the runtimes agents detect", "notes", notes)
	}
	if notes := prob.Topology.Networks(reports.network); len(notes) > 0 {
		p.log.Info("plan with the tiers agents attach tenant networks to", "notes", notes)
	}
	offers := make(map[string]string, len(prob.Topology.Nodes))
	for i := range prob.Topology.Nodes {
		offers[prob.Topology.Nodes[i].Name] = prob.Topology.Nodes[i].Offers()
	}
	// Noisy replicas moved off a node are placed again, elsewhere.
	avoid, movedFrom := moves(p.moveVals, prob)
	prob.Avoid = avoid
	withoutMoved(prev, movedFrom)
	notes := prob.Keep(prev)
	if len(down) > 0 {
		p.log.Info("plan with nodes down", "down", down, "notes", notes)
	}
	res, err := scheduler.Plan(prob, scheduler.Options{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("plan: %w", err)
	}
	markTemplates(res, rolls)
	res.Unplaced = append(res.Unplaced, broken...)
	return res, offers, rolls, nil
}

// maxTxnOps stays under store.MaxTxnOps.
const maxTxnOps = 100

// save writes the placements of every workload whose stored plan changed
// and removes those of deleted workloads.
func (p *planner) save(ctx context.Context, res *scheduler.Result, docs map[string]store.Value, wlRevs map[string]int64, hashes map[string]string, set *v1.Set, rolls map[string]*rolling, fence []store.Op) error {
	specs := map[string]*v1.WorkloadSpec{}
	for i := range set.Workloads {
		w := &set.Workloads[i]
		specs[w.Metadata.Tenant+"/"+w.Metadata.Name] = &w.Spec
	}
	want := map[string]*placementDoc{}
	for key, rev := range wlRevs {
		d := &placementDoc{WorkloadRevision: rev, PlacementHash: hashes[key], Placements: []scheduler.Placement{}, Unplaced: []scheduler.Unplaced{}}
		if r := rolls[key]; r != nil {
			d.Template, d.Spec, d.Rollout, d.History = r.template, specs[key], r.state, r.history
		}
		want[key] = d
	}
	for _, pl := range res.Placements {
		if d := want[pl.Workload]; d != nil {
			d.Placements = append(d.Placements, pl)
		}
	}
	for _, u := range res.Unplaced {
		if d := want[u.Workload]; d != nil {
			d.Unplaced = append(d.Unplaced, u)
		}
	}
	var ops []store.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := p.store.Txn(ctx, append(slices.Clip(fence), ops...)...)
		ops = ops[:0]
		return err
	}
	var errs []error
	add := func(op store.Op) {
		ops = append(ops, op)
		if len(ops)+len(fence) == maxTxnOps {
			errs = append(errs, flush())
		}
	}
	for key, d := range want {
		data, err := json.Marshal(d)
		if err != nil {
			return err
		}
		old, had := docs[key]
		switch {
		case !had:
			add(store.PutOp(placementsDir+"/"+key, data, store.Create))
		case !bytes.Equal(old.Data, data):
			add(store.PutOp(old.Key, data, old.Revision))
		}
	}
	for key, old := range docs {
		if _, ok := want[key]; !ok {
			add(store.DeleteOp(old.Key, old.Revision))
		}
	}
	errs = append(errs, flush())
	return errors.Join(errs...)
}

// run plans whenever a stored object changes, until ctx is done.
func (p *planner) run(ctx context.Context) error {
	dirs := []string{tenantsDir, topologiesDir, policiesDir, workloadsDir, movesDir, volumesDir}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		changed := make(chan struct{}, 1)
		var wg sync.WaitGroup
		watchErr := make(chan error, len(dirs))
		var err error
		for _, d := range dirs {
			var ch <-chan store.Event
			if ch, err = p.store.Watch(wctx, d, 0); err != nil {
				err = fmt.Errorf("plan: watch %s: %w", d, err)
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ev := range ch {
					if ev.Err != nil {
						watchErr <- ev.Err
						return
					}
					select {
					case changed <- struct{}{}:
					default:
					}
				}
			}()
		}
		if err == nil {
			err = p.follow(wctx, changed, watchErr)
		}
		cancel()
		wg.Wait()
		if errors.Is(err, store.ErrClosed) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			p.log.Warn("plan: watch ended; watching again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// debounce is how long the loop waits for more changes before planning.
const debounce = 50 * time.Millisecond

// Under a burst of writes the loop plans at most once per gap: planGap
// times as long as the last plan took, at least debounce and at most
// maxPlanGap. A plan of everything stored costs the same whatever
// changed, so planning after every write would spend most of the CPU on
// plans that the next write makes stale; this bounds the planner's share
// to about 1/(planGap+1) of a core while every change is still planned
// within maxPlanGap plus one plan's time. Callers that need the plan now
// (GET /v1/plan, the agents' desired replicas) plan on demand anyway.
const (
	planGap    = 8
	maxPlanGap = time.Second
)

// nextGap is how long after a plan that took took the next one may start.
func nextGap(took time.Duration) time.Duration {
	return min(max(planGap*took, debounce), maxPlanGap)
}

func (p *planner) follow(ctx context.Context, changed <-chan struct{}, watchErr <-chan error) error {
	plan := p.replan
	if plan == nil {
		plan = func(ctx context.Context) error { _, err := p.current(ctx); return err }
	}
	var ready time.Time // when the next plan may start
	replan := func() {
		start := time.Now()
		if err := plan(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("plan", "err", err)
		}
		end := time.Now()
		ready = end.Add(nextGap(end.Sub(start)))
	}
	replan()                  // what changed before the watches started
	var tick <-chan time.Time // node liveness changes without a stored change
	if p.recheck > 0 {
		t := time.NewTicker(p.recheck)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			replan()
		case err := <-watchErr:
			return err
		case <-changed:
			// Changes that arrive meanwhile are in the same plan (the
			// watchers' signal holds one change at most).
			wait := max(debounce, time.Until(ready))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			replan()
		}
	}
}

// placementHashes is placementHash of every workload of set, by
// TENANT/NAME (before defaults are applied: the stored form).
func placementHashes(set *v1.Set) map[string]string {
	out := make(map[string]string, len(set.Workloads))
	for _, w := range set.Workloads {
		out[w.Metadata.Tenant+"/"+w.Metadata.Name] = placementHash(w)
	}
	return out
}

// placementHash identifies what of a workload bears on where and on which
// tier its replicas run: everything but the image, command, arguments,
// environment, replica count, restart policy, health check and rollout.
func placementHash(w v1.Workload) string {
	s := w.Spec
	s.Image, s.Command, s.Args, s.Env, s.Replicas = "", nil, nil, nil, nil
	s.RestartPolicy, s.Healthcheck, s.Rollout = "", nil, v1.Rollout{}
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// waitingForLeader is why a follower shows a replica unplaced: the leader
// has not stored a plan for its workload's current version yet.
const waitingForLeader = "waiting for the leader to place it"

// stored replaces a follower's placements with the leader's stored plan:
// a follower never decides where a replica runs (two planners could
// disagree, and a replica would run twice). Until the leader plans a
// changed workload, it keeps the placements stored for the earlier
// version, within its replica count; the replicas beyond them are unplaced,
// waiting for the leader.
func (p *planner) stored(res *scheduler.Result, set *v1.Set, docs map[string]store.Value, wlRevs map[string]int64) {
	count := map[string]int{}
	for _, w := range set.Workloads {
		if w.Spec.Replicas != nil {
			count[w.Metadata.Tenant+"/"+w.Metadata.Name] = *w.Spec.Replicas
		}
	}
	res.Placements, res.Unplaced = nil, nil
	covered := map[string]map[int]bool{}
	keep := func(workload string, replica int) bool {
		if replica >= count[workload] || covered[workload][replica] {
			return false
		}
		if covered[workload] == nil {
			covered[workload] = map[int]bool{}
		}
		covered[workload][replica] = true
		return true
	}
	for _, key := range slices.Sorted(maps.Keys(docs)) {
		var d placementDoc
		if err := json.Unmarshal(docs[key].Data, &d); err != nil {
			continue
		}
		for _, pl := range d.Placements {
			if keep(pl.Workload, pl.Replica) {
				res.Placements = append(res.Placements, pl)
			}
		}
		if d.WorkloadRevision != wlRevs[key] {
			continue // why the old version was unplaced says nothing now
		}
		for _, u := range d.Unplaced {
			if keep(u.Workload, u.Replica) {
				res.Unplaced = append(res.Unplaced, u)
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(count)) {
		for r := range count[key] {
			if keep(key, r) {
				res.Unplaced = append(res.Unplaced, scheduler.Unplaced{Workload: key, Replica: r, Reasons: []string{waitingForLeader}})
			}
		}
	}
}
