package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// Node is what the agent needs of this node's runtimes; *replica.Node
// implements it.
type Node interface {
	Records() ([]replica.Record, error)
	Leftovers() ([]string, error)
	State(ctx context.Context, id string) (runtime.State, error)
	Start(ctx context.Context, s replica.Spec) error
	Remove(ctx context.Context, id string) error
}

// Source says which replicas this node should run now.
type Source interface {
	Desired(ctx context.Context) ([]replica.Spec, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) ([]replica.Spec, error)

// Desired implements Source.
func (f SourceFunc) Desired(ctx context.Context) ([]replica.Spec, error) { return f(ctx) }

// Agent reconciles one node.
type Agent struct {
	node    Node
	src     Source
	backoff *Backoff
	log     *slog.Logger
	now     func() time.Time
	tr      tracker
	// probes is the context of health checks (ended by Close).
	probes    context.Context
	endProbes context.CancelFunc
	// lastFailure dedupes the log of a replica failing the same way.
	lastFailure map[string]string
	// bmu guards backoff: starts run in parallel.
	bmu sync.Mutex
	// summarized is when the last summary was logged.
	summarized time.Time
	secrets    SecretSource
	// mon is the noisy-neighbour monitor (noisy.go).
	mon     *monitor
	volumes VolumeSweeper
	network Network // nil: no tenant networks
}

// SecretSource hands the agent a tenant's Secret for a replica that mounts
// it (the control plane, which audits each read).
type SecretSource interface {
	Secret(ctx context.Context, tenant, name string) (map[string]string, error)
}

// SecretFunc adapts a function to SecretSource.
type SecretFunc func(ctx context.Context, tenant, name string) (map[string]string, error)

// Secret implements SecretSource.
func (f SecretFunc) Secret(ctx context.Context, tenant, name string) (map[string]string, error) {
	return f(ctx, tenant, name)
}

// Options configure an Agent.
type Options struct {
	// Secrets delivers the Secrets replicas mount; nil: a replica that
	// mounts one can't start (fail closed).
	Secrets SecretSource
	Logger  *slog.Logger
	// BackoffBase and BackoffMax bound restart back-off; default 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Network is the node's tenant networks (network.go); nil: none.
	Network Network
	// Volumes wipes the node's volumes the control plane deleted, on
	// every reconcile (volume.Sweeper); nil: none.
	Volumes VolumeSweeper
}

// VolumeSweeper wipes deleted volumes (internal/volume.Sweeper).
type VolumeSweeper interface {
	Sweep(ctx context.Context) error
}

// DiskReporter is a VolumeSweeper that also measures the node's room for
// volumes, which the heartbeat reports to the planner.
type DiskReporter interface {
	VolumeDisk() (*wire.VolumeDisk, error)
}

// VolumeDisk is the node's room for volumes, nil when its sweeper can't
// say (or the node has none).
func (a *Agent) VolumeDisk() *wire.VolumeDisk {
	dr, ok := a.volumes.(DiskReporter)
	if !ok {
		return nil
	}
	d, err := dr.VolumeDisk()
	if err != nil {
		a.log.Warn("agent: measure the volume disk", "err", err)
		return nil
	}
	return d
}

// New returns an agent for node, fed by src.
func New(node Node, src Source, opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax == 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	probes, end := context.WithCancel(context.Background())
	keep, _ := node.(statusKeeper)
	return &Agent{
		node: node, src: src, backoff: NewBackoff(opts.BackoffBase, opts.BackoffMax), log: opts.Logger, now: opts.Now,
		tr: tracker{lives: map[string]*life{}, keep: keep}, probes: probes, endProbes: end, lastFailure: map[string]string{},
		secrets: opts.Secrets, mon: newMonitor(), volumes: opts.Volumes, network: opts.Network,
	}
}

// Close stops the agent's health checks (the replicas keep running).
func (a *Agent) Close() { a.endProbes() }

// Report is what one reconciliation did.
type Report struct {
	Done     []Action // applied (adoptions included)
	Deferred []Action // restarts waiting for their back-off
	Failed   map[string]error
}

// Observe lists the replicas this node has and their runtime state.
func (a *Agent) Observe(ctx context.Context) ([]Observed, []string, error) {
	recs, err := a.node.Records()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: observe: %w", err)
	}
	var out []Observed
	for _, r := range recs {
		o := Observed{Spec: r.Spec, Healthcheck: r.Healthcheck}
		st, err := a.node.State(ctx, r.Spec.ID)
		switch {
		case err == nil:
			o.Status = st.Status
		case errors.Is(err, runtime.ErrNotFound), errors.Is(err, replica.ErrNotFound):
		default:
			return nil, nil, fmt.Errorf("agent: state of %s: %w", r.Spec.ID, err)
		}
		out = append(out, o)
	}
	left, err := a.node.Leftovers()
	if err != nil {
		return nil, nil, fmt.Errorf("agent: observe: %w", err)
	}
	return out, left, nil
}

// Reconcile makes the node run exactly the desired replicas, once, and
// keeps what it learns about each (state, restarts, exit code, last error,
// health) for Statuses. A replica restarts as its restart policy says,
// with back-off after a failure: a failed start (a missing image, a
// refusal, a missing executable) waits like a crash does. An unhealthy
// replica is restarted.
func (a *Agent) Reconcile(ctx context.Context) (Report, error) {
	rep := Report{Failed: map[string]error{}}
	desired, err := a.src.Desired(ctx)
	if err != nil {
		return rep, fmt.Errorf("agent: desired replicas: %w", err)
	}
	observed, leftovers, err := a.Observe(ctx)
	if err != nil {
		return rep, err
	}
	for _, id := range leftovers {
		if err := a.node.Remove(ctx, id); err != nil {
			rep.Failed[id] = err
			continue
		}
		rep.Done = append(rep.Done, Action{Kind: Remove, ID: id, Why: "left over without a record"})
	}
	a.forgetUndesired(desired)
	if a.volumes != nil {
		// Before starts: a volume deleted and made again under its name
		// is wiped here first (until then the node refuses it as stale).
		if err := a.volumes.Sweep(ctx); err != nil {
			a.log.Warn("agent: wipe deleted volumes", "err", err)
		}
	}
	hcs := map[string]*replica.Healthcheck{}
	for _, o := range observed {
		hcs[o.Spec.ID] = o.Healthcheck
	}
	// Removals run first and one by one (they free room), then starts run
	// maxParallelStarts at a time: a node with many replicas to start is
	// not as slow as the sum of their image checks and runtime calls.
	// host-tier starts stay one at a time (the node checks they are alone).
	acts := Plan(desired, observed)
	errs := make([]error, len(acts))
	ran := make([]bool, len(acts))
	sem := make(chan struct{}, maxParallelStarts)
	var wg sync.WaitGroup
	for i, act := range acts {
		act, skip := a.decide(ctx, act, hcs[act.ID])
		if skip {
			continue
		}
		acts[i] = act
		a.bmu.Lock()
		ready := a.backoff.Ready(act.ID, a.now())
		a.bmu.Unlock()
		if (act.Kind == Restart || act.Kind == Start) && !ready {
			rep.Deferred = append(rep.Deferred, act)
			continue
		}
		ran[i] = true
		if act.Kind == Remove || act.Kind == Adopt || act.Spec.Tier == tenancy.Host {
			errs[i] = a.apply(ctx, act)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = a.apply(ctx, act)
		}()
	}
	wg.Wait()
	for i, act := range acts {
		if !ran[i] {
			continue
		}
		if err := errs[i]; err != nil {
			if a.lastFailure[act.ID] != err.Error() {
				a.log.Warn("replica failed", "action", act.Kind, "replica", act.ID, "err", err)
				a.lastFailure[act.ID] = err.Error()
			}
			rep.Failed[act.ID] = err
			continue
		}
		delete(a.lastFailure, act.ID)
		if act.Kind != Adopt {
			a.log.Info("replica "+string(act.Kind), "replica", act.ID, "why", act.Why)
		}
		rep.Done = append(rep.Done, act)
	}
	return rep, nil
}

// maxParallelStarts bounds the replicas one node starts at once.
const maxParallelStarts = 4

// forgetUndesired drops the lives of replicas no longer desired here that
// have no container either (those with one are removed by Plan).
func (a *Agent) forgetUndesired(desired []replica.Spec) {
	want := map[string]bool{}
	for _, s := range desired {
		want[s.ID] = true
	}
	a.tr.mu.Lock()
	defer a.tr.mu.Unlock()
	for id := range a.tr.lives {
		if !want[id] {
			a.tr.forget(id)
			delete(a.lastFailure, id)
		}
	}
}

// decide updates the replica's life from what Plan found and applies the
// restart policy and the health check to the action: skip is true when
// nothing must be done (a replica that stopped for good).
func (a *Agent) decide(ctx context.Context, act Action, hc *replica.Healthcheck) (Action, bool) {
	a.tr.mu.Lock()
	defer a.tr.mu.Unlock()
	if act.Kind == Remove {
		if l := a.tr.lives[act.ID]; l != nil {
			l.State = wire.ReplicaTerminating
		}
		return act, false
	}
	l := a.tr.get(act.Spec)
	switch act.Kind {
	case Adopt:
		if l.attempts == 0 { // running since before this agent: adopted
			l.attempts, l.State = 1, wire.ReplicaRunning
		}
		if l.health == nil && hc != nil {
			if ex, ok := a.node.(Execer); ok {
				l.health = startProber(a.probes, ex, act.ID, *hc, a.now)
			}
		}
		if l.health != nil && l.health.verdict() == wire.HealthUnhealthy {
			l.LastError = l.health.failure()
			l.failing = true
			return Action{Kind: Restart, ID: act.ID, Spec: act.Spec, Why: "unhealthy"}, false
		}
		return act, false
	case Restart:
		if l.attempts == 0 {
			l.attempts = 1 // it ran before this agent did
		}
		if l.health != nil {
			l.health.stop()
			l.health = nil
		}
		exit, known := a.exitOf(ctx, act.ID)
		if known && !exit.At.IsZero() && !exit.At.Equal(l.exitSeen) || known && exit.Code < 0 && l.exitSeen.IsZero() {
			code := exit.Code
			l.ExitCode, l.FinishedAt, l.exitSeen = &code, exit.At.UTC(), exit.At
			if l.FinishedAt.IsZero() {
				l.FinishedAt = a.now().UTC()
			}
			l.LastError = exitMessage(code)
			l.failing = true
		}
		code := -1
		if l.ExitCode != nil {
			code = *l.ExitCode
		}
		if act.Why != "unhealthy" && !restartWanted(act.Spec.RestartPolicy, code) {
			if l.State != finalState(code) {
				l.State = finalState(code)
				a.tr.save(act.ID, l)
			}
			return act, true
		}
		l.State = wire.ReplicaRestarting
	case Start, Replace:
		if l.failing {
			l.State = wire.ReplicaRestarting
		}
	}
	return act, false
}

func (a *Agent) apply(ctx context.Context, act Action) error {
	switch act.Kind {
	case Adopt:
		return nil
	case Remove:
		a.bmu.Lock()
		a.backoff.Forget(act.ID)
		a.bmu.Unlock()
		var err error
		if p, ok := a.node.(purger); ok {
			err = p.Purge(ctx, act.ID) // gone for good: its logs too
		} else {
			err = a.node.Remove(ctx, act.ID)
		}
		if err == nil {
			a.tr.mu.Lock()
			a.tr.forget(act.ID)
			a.tr.mu.Unlock()
		}
		return err
	case Replace, Restart:
		if err := a.node.Remove(ctx, act.ID); err != nil {
			return err
		}
	}
	a.bmu.Lock()
	a.backoff.Started(act.ID, a.now())
	a.bmu.Unlock()
	a.tr.mu.Lock()
	l := a.tr.get(act.Spec)
	if l.attempts > 0 {
		l.Restarts++
	}
	l.attempts++
	if l.health != nil {
		l.health.stop()
		l.health = nil
	}
	a.tr.mu.Unlock()

	spec, err := a.withSecrets(ctx, act.Spec)
	if err == nil {
		err = a.node.Start(ctx, spec)
	}

	a.tr.mu.Lock()
	defer a.tr.mu.Unlock()
	l = a.tr.get(act.Spec)
	defer a.tr.save(act.ID, l)
	if err != nil {
		l.LastError, l.failing = plain(err), true
		l.State = wire.ReplicaRestarting
		if act.Spec.RestartPolicy == v1.RestartNever {
			l.State = wire.ReplicaFailed
		}
		return err
	}
	l.State, l.StartedAt, l.failing = wire.ReplicaRunning, a.now().UTC(), false
	// Its health check starts with it: until the first verdict the
	// replica is starting, not running.
	if rn, ok := a.node.(recorder); ok {
		if rec, err := rn.Record(act.ID); err == nil && rec.Healthcheck != nil {
			if ex, ok := a.node.(Execer); ok {
				l.health = startProber(a.probes, ex, act.ID, *rec.Healthcheck, a.now)
			}
		}
	}
	return nil
}

// purger is a node that removes a replica with its logs (replica.Node
// does); Remove keeps the last run's log as the previous one, for restarts.
type purger interface {
	Purge(ctx context.Context, id string) error
}

// recorder is a node that reads one replica's record (replica.Node does).
type recorder interface {
	Record(id string) (replica.Record, error)
}

// Run reconciles every interval until ctx ends.
func (a *Agent) Run(ctx context.Context, interval time.Duration) error {
	defer a.Close()
	go a.RunMonitor(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		a.reconcileLogged(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// summaryEvery is how often an agent logs one line about its replicas;
// between two, it logs only changes (started, restarted, removed, failed).
const summaryEvery = 5 * time.Minute

// reconcileLogged reconciles once, logging a failure, and the periodic
// summary when it is due.
func (a *Agent) reconcileLogged(ctx context.Context) {
	if _, err := a.Reconcile(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("reconcile failed", "err", err)
	}
	if now := a.now(); now.Sub(a.summarized) >= summaryEvery {
		a.summarized = now
		counts := map[string]int{}
		for _, st := range a.Statuses() {
			counts[st.State]++
		}
		args := []any{}
		for _, state := range wire.ReplicaStates {
			if n := counts[state]; n > 0 {
				args = append(args, state, n)
			}
		}
		a.log.Info("replicas on this node", args...)
	}
}

// withSecrets fetches the values of the Secrets s mounts, for this start
// only (they are never stored with the replica).
func (a *Agent) withSecrets(ctx context.Context, s replica.Spec) (replica.Spec, error) {
	if len(s.Secrets) == 0 {
		return s, nil
	}
	if a.secrets == nil {
		return s, fmt.Errorf("replica %s mounts secrets, and this agent has no way to fetch them", s.ID)
	}
	s.SecretData = map[string]map[string]string{}
	for _, m := range s.Secrets {
		data, err := a.secrets.Secret(ctx, s.Tenant, m.Name)
		if err != nil {
			return s, fmt.Errorf("secret %s: %w", m.Name, err)
		}
		s.SecretData[m.Name] = data
	}
	return s, nil
}
