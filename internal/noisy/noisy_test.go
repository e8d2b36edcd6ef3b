package noisy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tick is one interval: the node's pressure and each replica's sample.
type tick struct {
	node    float64
	samples []Sample
}

func hog(used int64) Sample {
	return Sample{ID: "hog", Request: 500, Limit: 2000, Used: used, Pressure: -1}
}

func quiet(throttled float64) Sample {
	return Sample{ID: "web", Request: 500, Limit: 500, Used: 100, Throttled: throttled, Pressure: -1}
}

func TestDetector(t *testing.T) {
	ladder := Policy{Threshold: 0.2, Actions: []Action{Throttle, Report, Move}, Hold: 2, Calm: 3}
	starvedNode := func(used int64) tick { return tick{node: 0.5, samples: []Sample{hog(used), quiet(0)}} }
	calmNode := func(used int64) tick { return tick{node: 0.01, samples: []Sample{hog(used), quiet(0)}} }
	fig := func(used int64, victim string, starved float64) Figures {
		return Figures{Used: used, Request: 500, Victim: victim, Starved: starved, Threshold: 0.2}
	}
	tests := []struct {
		name   string
		policy Policy
		ticks  []tick
		want   [][]Step // steps per tick, nil for none
	}{
		{
			name:   "noisy for Hold samples: throttle, with its report",
			policy: ladder,
			ticks:  []tick{starvedNode(1800), starvedNode(1800)},
			want: [][]Step{nil, {
				{ID: "hog", Action: Throttle, Figures: fig(1800, "node", 0.5)},
				{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)},
			}},
		},
		{
			name:   "one noisy sample is not enough (hysteresis)",
			policy: ladder,
			ticks:  []tick{starvedNode(1800), calmNode(1800), starvedNode(1800)},
			want:   [][]Step{nil, nil, nil},
		},
		{
			name:   "starvation goes on after the throttle: move",
			policy: ladder,
			ticks:  []tick{starvedNode(1800), starvedNode(1800), starvedNode(500), starvedNode(500)},
			want: [][]Step{nil, {
				{ID: "hog", Action: Throttle, Figures: fig(1800, "node", 0.5)},
				{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)},
			}, nil, {
				{ID: "hog", Action: Move, Figures: fig(500, "node", 0.5)},
			}},
		},
		{
			name:   "the throttle helps: calm releases the burst after Calm samples",
			policy: ladder,
			ticks:  []tick{starvedNode(1800), starvedNode(1800), calmNode(500), calmNode(500), calmNode(500)},
			want: [][]Step{nil, {
				{ID: "hog", Action: Throttle, Figures: fig(1800, "node", 0.5)},
				{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)},
			}, nil, nil, {
				{ID: "hog", Action: Release, Figures: fig(500, "node", 0.01)},
			}},
		},
		{
			name:   "between the thresholds nothing moves either way",
			policy: ladder,
			ticks: []tick{starvedNode(1800), starvedNode(1800),
				{node: 0.15, samples: []Sample{hog(500), quiet(0)}}, {node: 0.15, samples: []Sample{hog(500), quiet(0)}},
				{node: 0.15, samples: []Sample{hog(500), quiet(0)}}, {node: 0.15, samples: []Sample{hog(500), quiet(0)}}},
			want: [][]Step{nil, {
				{ID: "hog", Action: Throttle, Figures: fig(1800, "node", 0.5)},
				{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)},
			}, nil, nil, nil, nil},
		},
		{
			name:   "within its request: never touched, however starved the node",
			policy: ladder,
			ticks:  []tick{starvedNode(500), starvedNode(400), starvedNode(500), starvedNode(100)},
			want:   [][]Step{nil, nil, nil, nil},
		},
		{
			name:   "alone on the node: the node's pressure is its own",
			policy: ladder,
			ticks:  []tick{{node: 0.9, samples: []Sample{hog(1800)}}, {node: 0.9, samples: []Sample{hog(1800)}}},
			want:   [][]Step{nil, nil},
		},
		{
			name:   "a throttled neighbour (cgroup figure) makes the burster noisy",
			policy: ladder,
			ticks: []tick{{node: -1, samples: []Sample{hog(1800), quiet(0.4)}},
				{node: -1, samples: []Sample{hog(1800), quiet(0.4)}}},
			want: [][]Step{nil, {
				{ID: "hog", Action: Throttle, Figures: fig(1800, "web", 0.4)},
				{ID: "hog", Action: Report, Figures: fig(1800, "web", 0.4)},
			}},
		},
		{
			name:   "cgroup v2 pressure of a neighbour",
			policy: Policy{Threshold: 0.2, Actions: []Action{Report}, Hold: 1},
			ticks: []tick{{node: -1, samples: []Sample{hog(1800),
				{ID: "web", Request: 500, Limit: 500, Used: 100, Pressure: 0.3}}}},
			want: [][]Step{{{ID: "hog", Action: Report, Figures: fig(1800, "web", 0.3)}}},
		},
		{
			name:   "report only: no release (nothing was throttled)",
			policy: Policy{Threshold: 0.2, Actions: []Action{Report}, Hold: 1, Calm: 1},
			ticks:  []tick{starvedNode(1800), calmNode(1800), starvedNode(1800)},
			want: [][]Step{
				{{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)}},
				nil,
				{{ID: "hog", Action: Report, Figures: fig(1800, "node", 0.5)}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(tt.policy)
			var got [][]Step
			for _, tk := range tt.ticks {
				got = append(got, d.Observe(Node{Pressure: tk.node}, tk.samples))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThrottlingTheLadderAppliedIsNotStarvation(t *testing.T) {
	d := New(Policy{Threshold: 0.2, Actions: []Action{Throttle}, Hold: 1})
	a := Sample{ID: "a", Request: 500, Limit: 2000, Used: 1500, Pressure: -1}
	b := Sample{ID: "b", Request: 500, Limit: 500, Used: 100, Throttled: 0.5, Pressure: -1}
	if got := d.Observe(Node{Pressure: -1}, []Sample{a, b}); len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("first: %+v, want a throttled", got)
	}
	// a is now throttled at its request (and reports throttling); c bursts.
	a.Used, a.Throttled, b.Throttled = 500, 0.9, 0
	c := Sample{ID: "c", Request: 100, Limit: 1000, Used: 800, Pressure: -1}
	if got := d.Observe(Node{Pressure: -1}, []Sample{a, b, c}); len(got) != 0 {
		t.Fatalf("c was blamed for a's own throttle: %+v", got)
	}
	if diff := cmp.Diff([]string{"a"}, d.Throttled()); diff != "" {
		t.Error(diff)
	}
	// a replica gone from the samples is forgotten.
	d.Observe(Node{Pressure: -1}, []Sample{b})
	if got := d.Throttled(); len(got) != 0 {
		t.Errorf("throttled after a left: %v", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want string // "" valid
	}{
		{"ok", Policy{Threshold: 0.1, Actions: []Action{Throttle, Report, Move}}, ""},
		{"zero threshold", Policy{Actions: []Action{Report}}, "threshold 0: use a fraction"},
		{"threshold 1", Policy{Threshold: 1, Actions: []Action{Report}}, "threshold 1: use a fraction"},
		{"no actions", Policy{Threshold: 0.1}, "actions: list at least one"},
		{"unknown action", Policy{Threshold: 0.1, Actions: []Action{"kill"}}, `actions[0]: "kill"`},
		{"twice", Policy{Threshold: 0.1, Actions: []Action{Report, Report}}, `actions[1]: "report" listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
