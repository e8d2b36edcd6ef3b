package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
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
}

// Options configure an Agent.
type Options struct {
	Logger *slog.Logger
	// BackoffBase and BackoffMax bound restart back-off; default 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
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
	return &Agent{node: node, src: src, backoff: NewBackoff(opts.BackoffBase, opts.BackoffMax), log: opts.Logger, now: opts.Now}
}

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
		o := Observed{Spec: r.Spec}
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

// Reconcile makes the node run exactly the desired replicas, once.
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
	for _, act := range Plan(desired, observed) {
		now := a.now()
		if act.Kind == Restart && !a.backoff.Ready(act.ID, now) {
			rep.Deferred = append(rep.Deferred, act)
			continue
		}
		if err := a.apply(ctx, act); err != nil {
			a.log.Warn("reconcile", "action", act.Kind, "replica", act.ID, "err", err)
			rep.Failed[act.ID] = err
			continue
		}
		a.log.Info("reconcile", "action", act.Kind, "replica", act.ID, "why", act.Why)
		rep.Done = append(rep.Done, act)
	}
	return rep, nil
}

func (a *Agent) apply(ctx context.Context, act Action) error {
	switch act.Kind {
	case Adopt:
		return nil
	case Remove:
		a.backoff.Forget(act.ID)
		return a.node.Remove(ctx, act.ID)
	case Replace, Restart:
		if err := a.node.Remove(ctx, act.ID); err != nil {
			return err
		}
	}
	a.backoff.Started(act.ID, a.now())
	return a.node.Start(ctx, act.Spec)
}

// Run reconciles every interval until ctx ends.
func (a *Agent) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := a.Reconcile(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reconcile failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
