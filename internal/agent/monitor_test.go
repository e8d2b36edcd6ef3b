package agent_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/agent"
	"rung.dev/rung/internal/noisy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

// cgroupFake is a node whose replicas always run and whose cgroups the
// test scripts: each read advances a replica's CPU by its rate over one
// simulated second; SetCPU is recorded (the I/O edge of the monitor).
type cgroupFake struct {
	mu    sync.Mutex
	specs []replica.Spec
	rate  map[string]int64 // millicores used
	thr   map[string]int64 // throttled periods per read
	cpu   map[string]replica.Usage
	clock time.Time
	sets  []string
}

func (f *cgroupFake) Records() ([]replica.Record, error) {
	var out []replica.Record
	for _, s := range f.specs {
		out = append(out, replica.Record{Spec: s})
	}
	return out, nil
}
func (f *cgroupFake) Leftovers() ([]string, error) { return nil, nil }
func (f *cgroupFake) State(context.Context, string) (runtime.State, error) {
	return runtime.State{Status: runtime.Running}, nil
}
func (f *cgroupFake) Start(context.Context, replica.Spec) error { return nil }
func (f *cgroupFake) Remove(context.Context, string) error      { return nil }
func (f *cgroupFake) UsageOf(tenant, id string) (replica.Usage, error) {
	return f.CPUUsageOf(tenant, id)
}
func (f *cgroupFake) CPUUsageOf(_, id string) (replica.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.cpu[id]
	u.CPU += time.Duration(f.rate[id]) * time.Millisecond
	u.Periods += 10
	u.Throttled += f.thr[id]
	u.Stall = -1
	u.At = f.clock
	f.cpu[id] = u
	return u, nil
}
func (f *cgroupFake) SetCPU(_, id string, milli int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, fmt.Sprintf("%s %dm", id, milli))
	return nil
}

// TestMonitorAppliesTheLadder drives the agent's monitor over scripted
// cgroups: a bursting replica beside a throttled neighbour is throttled to
// its request (SetCPU), the steps carry the figures, the neighbour within
// its request is never touched, and removing the policy gives the burst
// back.
func TestMonitorAppliesTheLadder(t *testing.T) {
	pol := &noisy.Policy{Threshold: 0.2, Actions: []noisy.Action{noisy.Throttle, noisy.Report}, Hold: 2}
	specs := []replica.Spec{
		{ID: "b-hog-0", Tenant: "b", Tier: tenancy.Container, Image: "x", Resources: topology.Resources{MilliCPU: 100}, Limits: &topology.Resources{MilliCPU: 2000}, Noisy: pol},
		{ID: "s-web-0", Tenant: "s", Tier: tenancy.Container, Image: "x", Resources: topology.Resources{MilliCPU: 500}, Noisy: pol},
	}
	f := &cgroupFake{specs: specs, rate: map[string]int64{"b-hog-0": 1800, "s-web-0": 400}, thr: map[string]int64{"s-web-0": 5},
		cpu: map[string]replica.Usage{}, clock: time.Unix(100, 0)}
	desired := specs
	clock := func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.clock }
	a := agent.New(f, agent.SourceFunc(func(context.Context) ([]replica.Spec, error) { return desired, nil }), agent.Options{Now: clock})
	if _, err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	tick := func() []string {
		f.mu.Lock()
		f.clock = f.clock.Add(time.Second)
		f.mu.Unlock()
		var out []string
		for _, s := range a.MonitorOnce(t.Context()) {
			out = append(out, fmt.Sprintf("%s %s %dm/%dm %s %.2f", s.Replica, s.Action, s.UsedMilliCPU, s.RequestMilliCPU, s.Victim, s.Starved))
		}
		return out
	}
	var got [][]string
	for range 3 {
		got = append(got, tick())
	}
	want := [][]string{nil, nil, {"b-hog-0 throttle 1800m/100m s-web-0 0.50", "b-hog-0 report 1800m/100m s-web-0 0.50"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b-hog-0 100m"}, f.sets); diff != "" {
		t.Errorf("SetCPU (-want +got):\n%s", diff)
	}
	st := a.Statuses()
	if !st["b-hog-0"].Throttled || len(st["b-hog-0"].Noisy) != 2 || st["s-web-0"].Throttled || len(st["s-web-0"].Noisy) != 0 {
		t.Errorf("statuses: hog %+v, web %+v", st["b-hog-0"].ReplicaStatus, st["s-web-0"].ReplicaStatus)
	}
	if u := st["b-hog-0"].Usage; u == nil || u.MilliCPU != 1800 {
		t.Errorf("hog usage from the monitor: %+v", u)
	}
	// The site drops its ladder: the hog gets its limit back.
	for i := range desired {
		desired[i].Noisy = nil
	}
	if _, err := a.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	tick()
	if diff := cmp.Diff([]string{"b-hog-0 100m", "b-hog-0 2000m"}, f.sets); diff != "" {
		t.Errorf("SetCPU after the policy went (-want +got):\n%s", diff)
	}
}
