package agent_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/tenancy"
)

// memNode is a node whose containers are entries in a map.
type memNode struct {
	mu   sync.Mutex
	recs map[string]replica.Spec
	runs map[string]bool
}

func newMemNode() *memNode {
	return &memNode{recs: map[string]replica.Spec{}, runs: map[string]bool{}}
}

func (n *memNode) Records() ([]replica.Record, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []replica.Record
	for _, id := range slices.Sorted(maps.Keys(n.recs)) {
		out = append(out, replica.Record{Spec: n.recs[id]})
	}
	return out, nil
}

func (n *memNode) Leftovers() ([]string, error) { return nil, nil }

func (n *memNode) State(_ context.Context, id string) (runtime.State, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runs[id] {
		return runtime.State{}, runtime.ErrNotFound
	}
	return runtime.State{ID: id, Status: runtime.Running}, nil
}

func (n *memNode) Start(_ context.Context, s replica.Spec) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.recs[s.ID], n.runs[s.ID] = s, true
	return nil
}

func (n *memNode) Remove(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.recs, id)
	delete(n.runs, id)
	return nil
}

// fakeAPI is a control plane that hands out desired replicas per node and
// records heartbeats; down makes it unreachable.
type fakeAPI struct {
	desired map[string][]replica.Spec
	beats   []wire.Heartbeat
	down    bool
}

var errUnreachable = errors.New("connection refused")

func (a *fakeAPI) Heartbeat(_ context.Context, node string, hb wire.Heartbeat) error {
	if a.down {
		return errUnreachable
	}
	a.beats = append(a.beats, hb)
	return nil
}

func (a *fakeAPI) NodeReplicas(_ context.Context, node string) ([]replica.Spec, error) {
	if a.down {
		return nil, errUnreachable
	}
	return a.desired[node], nil
}

func TestRemote(t *testing.T) {
	ctx := t.Context()
	spec := func(id string) replica.Spec {
		return replica.Spec{ID: id, Tenant: "acme", Tier: tenancy.Container, Image: "busybox:latest"}
	}
	api := &fakeAPI{desired: map[string][]replica.Spec{"n1": {spec("acme-web-0")}, "n2": {spec("acme-web-1")}}}
	node := newMemNode()
	runtimes := tenancy.Set(0).With(tenancy.Container).With(tenancy.Sandbox)
	r, err := agent.NewRemote("n1", api, node, runtimes, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	want := []wire.Heartbeat{
		{Runtimes: []string{"container", "sandbox"}, Replicas: []wire.ReplicaState{}},
		{Runtimes: []string{"container", "sandbox"}, Replicas: []wire.ReplicaState{{ID: "acme-web-0", Tenant: "acme", Tier: "container", Status: "running",
			ReplicaStatus: wire.ReplicaStatus{State: wire.ReplicaRunning, Health: wire.HealthNone}}}},
	}
	// When it started and its spec's hash are the agent's to say.
	if diff := cmp.Diff(want, api.beats, cmpopts.IgnoreFields(wire.ReplicaStatus{}, "StartedAt", "Hash")); diff != "" {
		t.Errorf("heartbeats (-want +got):\n%s", diff)
	}

	// The control plane is unreachable: nothing changes on the node.
	api.down = true
	if _, err := r.Once(ctx); !errors.Is(err, errUnreachable) {
		t.Errorf("Once with the API down: %v", err)
	}
	if recs, _ := node.Records(); len(recs) != 1 {
		t.Errorf("records with the API down: %v", recs)
	}

	// The replica was re-placed elsewhere: this node removes it.
	api.down = false
	api.desired["n1"] = nil
	if _, err := r.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if recs, _ := node.Records(); len(recs) != 0 {
		t.Errorf("records after re-placement: %v", recs)
	}

	if _, err := agent.NewRemote("", api, node, runtimes, agent.Options{}); !errors.Is(err, agent.ErrNoNode) {
		t.Errorf("NewRemote without a node: %v", err)
	}
}

// decidingNode is a memNode that made admission decisions.
type decidingNode struct {
	*memNode
	pending []policy.Decision
}

func (n *decidingNode) TakeDecisions() []policy.Decision {
	out := n.pending
	n.pending = nil
	return out
}

// TestRemoteDecisions: the node's admission decisions go out with the
// next heartbeat; while the control plane is unreachable they wait, and
// once acknowledged they are not sent again.
func TestRemoteDecisions(t *testing.T) {
	ctx := t.Context()
	api := &fakeAPI{desired: map[string][]replica.Spec{}, down: true}
	node := &decidingNode{memNode: newMemNode(), pending: []policy.Decision{{Kind: policy.KindImage, Tenant: "acme", Subject: "app:1", Digest: "sha256:aa"}}}
	r, err := agent.NewRemote("n1", api, node, tenancy.Set(0).With(tenancy.Container), agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Heartbeat(ctx); !errors.Is(err, errUnreachable) {
		t.Fatalf("heartbeat with the API down: %v", err)
	}
	node.pending = append(node.pending, policy.Decision{Kind: policy.KindImage, Tenant: "acme", Subject: "app:2", Digest: "sha256:bb"})
	api.down = false
	for range 2 {
		if err := r.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var got [][]string
	for _, hb := range api.beats {
		var subj []string
		for _, d := range hb.Decisions {
			subj = append(subj, d.Subject)
		}
		got = append(got, subj)
	}
	if diff := cmp.Diff([][]string{{"app:1", "app:2"}, nil}, got); diff != "" {
		t.Errorf("decisions per heartbeat (-want +got):\n%s", diff)
	}
}
