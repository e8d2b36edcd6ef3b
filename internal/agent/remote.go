package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// API is what a remote agent needs of the control plane;
// *client.Client implements it.
type API interface {
	Heartbeat(ctx context.Context, node string, hb wire.Heartbeat) error
	NodeReplicas(ctx context.Context, node string) ([]replica.Spec, error)
}

// ErrNoNode: a remote agent without a node name.
var ErrNoNode = errors.New("agent: no node name")

// Remote is the node agent of `rung agent`: one node of the topology,
// told what to run by a control plane over its API. Every interval it
// heartbeats (with the tiers it can run and its replicas' states), fetches
// its desired replicas and reconciles. When the control plane cannot be
// reached it changes nothing: replicas keep running until it answers.
type Remote struct {
	node     string
	api      API
	agent    *Agent
	replicas Node
	runtimes tenancy.Set
	log      *slog.Logger
	// network is the node's tenant networks, reported and told its peers.
	network Network

	mu sync.Mutex
	// unsent are admission decisions of the node not yet acknowledged by
	// the control plane (sent with the next heartbeat; at least once).
	unsent []policy.Decision

	lease lease // fence.go
}

// DecisionSource is a node that keeps its admission decisions for the
// audit log (replica.Node does).
type DecisionSource interface {
	TakeDecisions() []policy.Decision
}

// maxUnsent bounds the decisions an agent holds while the control plane
// is unreachable; the oldest go first.
const maxUnsent = 1024

// NewRemote returns the agent of node, running replicas on rn with the
// tiers in runtimes (say, from replica.Node.Runtimes).
func NewRemote(node string, api API, rn Node, runtimes tenancy.Set, opts Options) (*Remote, error) {
	if node == "" {
		return nil, ErrNoNode
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	src := SourceFunc(func(ctx context.Context) ([]replica.Spec, error) { return api.NodeReplicas(ctx, node) })
	if sa, ok := api.(interface {
		NodeSecret(ctx context.Context, node, tenant, name string) (map[string]string, error)
	}); ok && opts.Secrets == nil {
		opts.Secrets = SecretFunc(func(ctx context.Context, tenant, name string) (map[string]string, error) {
			return sa.NodeSecret(ctx, node, tenant, name)
		})
	}
	return &Remote{
		network: opts.Network,
		node:    node, api: api, agent: New(rn, src, opts), replicas: rn, runtimes: runtimes,
		log: opts.Logger.With("node", node),
	}, nil
}

// Heartbeat reports this node's runtimes and replicas, with the tails of
// their logs, to the control plane.
func (r *Remote) Heartbeat(ctx context.Context) error {
	states, err := r.agent.States(ctx)
	if err != nil {
		return err
	}
	hb := wire.Heartbeat{Runtimes: []string{}, Replicas: states}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ds, ok := r.replicas.(DecisionSource); ok {
		r.unsent = append(r.unsent, ds.TakeDecisions()...)
		if over := len(r.unsent) - maxUnsent; over > 0 {
			r.log.Warn("admission decisions dropped: the control plane has been unreachable", "dropped", over)
			r.unsent = r.unsent[over:]
		}
	}
	hb.Decisions = r.unsent[:min(len(r.unsent), wire.MaxDecisions)]
	for t := tenancy.Container; t <= tenancy.Host; t++ {
		if r.runtimes.Has(t) {
			hb.Runtimes = append(hb.Runtimes, t.String())
		}
	}
	if e, ok := r.replicas.(interface {
		EmulatedTiers(context.Context) []string
	}); ok {
		hb.Emulated = e.EmulatedTiers(ctx)
	}
	// The tails of the replicas' logs, for `rung logs` (bounded).
	if logs := r.agent.LogTails(ctx); len(logs) > 0 {
		hb.Logs = logs
	}
	// The ladder's steps, for the audit log and moves (at least once).
	hb.Noisy = r.agent.NoisySteps(wire.MaxNoisySteps)
	if p := r.agent.NodePressure(); p >= 0 {
		hb.CPUPressure = &p
	}
	if r.network != nil {
		hb.Network = r.network.Report()
	}
	hb.VolumeDisk = r.agent.VolumeDisk()
	if err := r.send(ctx, hb); err != nil {
		return fmt.Errorf("agent %s: heartbeat: %w", r.node, err)
	}
	r.agent.AckNoisySteps(len(hb.Noisy))
	r.unsent = r.unsent[len(hb.Decisions):]
	// The other nodes' slices and replicas, after each heartbeat.
	if ps, ok := r.api.(PeerSource); ok && r.network != nil {
		peers, err := ps.NodePeers(ctx, r.node)
		if err != nil {
			return fmt.Errorf("agent %s: peers: %w", r.node, err)
		}
		if err := r.network.SetPeers(ctx, peers); err != nil {
			return fmt.Errorf("agent %s: peers: %w", r.node, err)
		}
	}
	return nil
}

// Once heartbeats, then reconciles with the desired replicas.
func (r *Remote) Once(ctx context.Context) (Report, error) {
	if err := r.Heartbeat(ctx); err != nil {
		return Report{}, err
	}
	return r.agent.Reconcile(ctx)
}

// Run heartbeats and reconciles every interval until ctx ends. The
// heartbeat has its own loop, so a slow reconciliation (an image to
// unpack, a sandbox to boot) never makes the node look down.
func (r *Remote) Run(ctx context.Context, interval time.Duration) error {
	if tn, ok := r.api.(Tunneler); ok {
		go keepTunnel(ctx, tn, r.node, nodeAPI(r.replicas), r.log)
	}
	go r.agent.RunMonitor(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		every(ctx, interval, func() {
			if err := r.Heartbeat(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("heartbeat failed", "err", err)
			}
		})
	}()
	fenced := make(chan struct{})
	go func() { defer close(fenced); r.fence(ctx, fenceCheck) }()
	every(ctx, interval, func() {
		// A node whose lease expired starts nothing: the control plane
		// may have re-placed its replicas.
		if !r.lease.expired(r.agent.now()) {
			r.agent.reconcileLogged(ctx)
		}
	})
	<-done
	<-fenced
	return ctx.Err()
}

// every calls f now and then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// States reports every replica this node has, with its runtime state
// ("missing" when the record has no container) and what the agent knows
// of its life, and the desired replicas that have no container because
// they failed to start (state restarting or failed, with the error), as
// heartbeats carry them.
func (a *Agent) States(ctx context.Context) ([]wire.ReplicaState, error) {
	observed, _, err := a.Observe(ctx)
	if err != nil {
		return nil, err
	}
	lives := a.Statuses()
	out := []wire.ReplicaState{}
	for _, o := range observed {
		st := string(o.Status)
		if st == "" {
			st = "missing"
		}
		rs, ok := lives[o.Spec.ID]
		delete(lives, o.Spec.ID)
		if !ok || rs.Hash != Hash(o.Spec) {
			// Not reconciled yet by this agent: say what the runtime says.
			rs = wire.ReplicaState{ReplicaStatus: wire.ReplicaStatus{State: runtimeState(o.Status), Health: wire.HealthNone, Hash: Hash(o.Spec)}}
		}
		rs.ID, rs.Tenant, rs.Tier, rs.Status, rs.Template = o.Spec.ID, o.Spec.Tenant, o.Spec.Tier.String(), st, o.Spec.Template
		if a.network != nil && o.Spec.Network != nil {
			rs.Address, rs.Network = a.network.Replica(o.Spec.ID)
			// Discovery answers with ready replicas only.
			a.network.SetReady(o.Spec.ID, rs.State == wire.ReplicaRunning && rs.Health != wire.HealthUnhealthy && rs.Health != wire.HealthStarting)
		}
		out = append(out, rs)
	}
	for _, id := range slices.Sorted(maps.Keys(lives)) {
		rs := lives[id]
		rs.Status = "missing"
		out = append(out, rs)
	}
	return out, nil
}

// runtimeState is the replica state a runtime status stands for, before
// the agent knows more.
func runtimeState(s runtime.Status) string {
	switch s {
	case runtime.Running:
		return wire.ReplicaRunning
	case runtime.Created, runtime.Creating:
		return wire.ReplicaStarting
	case runtime.Stopped:
		return wire.ReplicaRestarting
	}
	return wire.ReplicaPending
}
