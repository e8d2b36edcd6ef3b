package agent

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/tenancy"
)

func spec(id, img string) replica.Spec {
	return replica.Spec{ID: id, Tenant: "acme", Tier: tenancy.Container, Image: img}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		desired  []replica.Spec
		observed []Observed
		want     []string // "kind id"
	}{
		{name: "nothing", want: nil},
		{name: "start missing", desired: []replica.Spec{spec("a", "x"), spec("b", "x")}, want: []string{"start a", "start b"}},
		{
			name:     "adopt running, restart stopped, restart a bundle without container",
			desired:  []replica.Spec{spec("a", "x"), spec("b", "x"), spec("c", "x")},
			observed: []Observed{{Spec: spec("a", "x"), Status: runtime.Running}, {Spec: spec("b", "x"), Status: runtime.Stopped}, {Spec: spec("c", "x")}},
			want:     []string{"restart b", "restart c", "adopt a"},
		},
		{
			name:     "remove orphans first, replace changed",
			desired:  []replica.Spec{spec("a", "y")},
			observed: []Observed{{Spec: spec("a", "x"), Status: runtime.Running}, {Spec: spec("z", "x"), Status: runtime.Running}},
			want:     []string{"remove z", "replace a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range Plan(tt.desired, tt.observed) {
				got = append(got, string(a.Kind)+" "+a.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	b := NewBackoff(time.Second, 8*time.Second)
	t0 := time.Unix(1000, 0)
	if !b.Ready("a", t0) {
		t.Fatal("a fresh replica must be ready")
	}
	var waits []time.Duration
	now := t0
	for range 6 {
		b.Started("a", now)
		w := time.Duration(0)
		for !b.Ready("a", now.Add(w)) {
			w += 100 * time.Millisecond
		}
		waits = append(waits, w)
		now = now.Add(w)
	}
	// The first start sets no wait (a first crash restarts at once).
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	if diff := cmp.Diff(want, waits); diff != "" {
		t.Errorf("back-off (-want +got):\n%s", diff)
	}
	b.Started("a", now)
	if b.Ready("a", now.Add(7*time.Second)) {
		t.Error("back-off above the cap was cut short")
	}
	// Running for long resets the back-off: the next restart is immediate.
	b.Started("a", now.Add(time.Hour))
	if !b.Ready("a", now.Add(time.Hour)) {
		t.Error("back-off not reset after a long run")
	}
}
