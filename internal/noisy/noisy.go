// Package noisy decides which replicas on a node are noisy neighbours and
// what the site's ladder does about them (DESIGN §12). It is pure: the
// agent feeds it samples read from the kernel and applies the steps it
// returns; nothing here reads a file or a clock.
//
// A replica is noisy when it uses more CPU than its request while a
// neighbour on the same node is starved: the neighbour's CPU pressure or
// throttling is above the Policy's threshold (cgroup v2 gives pressure per
// cgroup; on cgroup v1 the node's pressure stands for every neighbour).
// Hysteresis keeps it from flapping: a replica must be noisy for Hold
// samples in a row before the first step, the starvation must last Hold
// more samples before each further corrective step, and a throttled
// replica is released only after Calm samples in a row without starvation
// below half the threshold.
package noisy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Action is one rung of the ladder.
type Action string

// The actions, in the order a ladder usually lists them.
const (
	// Throttle caps the replica's CPU at its request (CFS quota).
	Throttle Action = "throttle"
	// Report records an event, a metric and an audit entry.
	Report Action = "report"
	// Move asks the control plane to place the replica on another node
	// (or on a host of its own when the policy allows).
	Move Action = "move"
	// Isolate asks the control plane to raise the replica's workload to
	// the host tier: the planner's host floor (a host of its own), as a
	// tenancy rule or the workload's tier: host would.
	Isolate Action = "isolate"
	// Release gives a throttled replica its burst back; the detector
	// takes it by itself once the node is calm (never listed in a ladder).
	Release Action = "release"
)

// Actions lists the actions a ladder may name.
var Actions = []Action{Throttle, Report, Move, Isolate}

// ErrInvalid is returned for a policy that can't be used.
var ErrInvalid = errors.New("invalid noisy-neighbour policy")

// Policy is the site's noisy-neighbour policy (a Policy's spec.noisy).
type Policy struct {
	// Threshold is the starvation threshold, a fraction of the interval
	// (0.1: a neighbour stalled or throttled 10% of the time).
	Threshold float64 `json:"threshold"`
	// Actions is the ladder, taken in order.
	Actions []Action `json:"actions"`
	// Interval is how often the agent samples (default 2s).
	Interval time.Duration `json:"interval,omitempty"`
	// Hold is how many samples in a row a condition must hold before a
	// step (default 2).
	Hold int `json:"hold,omitempty"`
	// Calm is how many calm samples release a throttled replica
	// (default 15).
	Calm int `json:"calm,omitempty"`
}

// Defaults of a Policy's optional fields.
const (
	DefaultInterval = 2 * time.Second
	DefaultHold     = 2
	DefaultCalm     = 15
)

// WithDefaults fills the optional fields.
func (p Policy) WithDefaults() Policy {
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	if p.Hold <= 0 {
		p.Hold = DefaultHold
	}
	if p.Calm <= 0 {
		p.Calm = DefaultCalm
	}
	return p
}

// Validate checks the policy, naming the field and the fix.
func (p Policy) Validate() error {
	if !(p.Threshold > 0 && p.Threshold < 1) {
		return fmt.Errorf("%w: threshold %v: use a fraction between 0 and 1, e.g. 0.1", ErrInvalid, p.Threshold)
	}
	if len(p.Actions) == 0 {
		return fmt.Errorf("%w: actions: list at least one of throttle, report, move", ErrInvalid)
	}
	seen := map[Action]bool{}
	for i, a := range p.Actions {
		if !slices.Contains(Actions, a) {
			return fmt.Errorf("%w: actions[%d]: %q: use throttle, report or move", ErrInvalid, i, a)
		}
		if seen[a] {
			return fmt.Errorf("%w: actions[%d]: %q listed twice", ErrInvalid, i, a)
		}
		seen[a] = true
	}
	if p.Hold < 0 || p.Calm < 0 || p.Interval < 0 {
		return fmt.Errorf("%w: interval, hold and calm must not be negative", ErrInvalid)
	}
	return nil
}

// Sample is one replica over one interval.
type Sample struct {
	ID string
	// Request and Limit are its CPU request and limit, in thousandths of
	// a core (Limit == Request: no burst).
	Request, Limit int64
	// Used is the CPU it used over the interval, in thousandths of a core.
	Used int64
	// Throttled is the fraction of CFS periods in which it was throttled.
	Throttled float64
	// Pressure is its cgroup's CPU pressure (fraction of the interval some
	// task stalled), or -1 where the kernel has none per cgroup (v1).
	Pressure float64
}

// Node is the node's own figures over the interval.
type Node struct {
	// Pressure is the node's CPU pressure (some), a fraction of the
	// interval; -1 when unknown.
	Pressure float64
}

// Figures are the numbers that triggered a step, as describe shows them.
type Figures struct {
	// Used and Request are the noisy replica's CPU, in millicores.
	Used    int64 `json:"usedMilliCPU"`
	Request int64 `json:"requestMilliCPU"`
	// Victim is the starved neighbour ("node" for the node's pressure on
	// cgroup v1), Starved its pressure or throttling (a fraction).
	Victim  string  `json:"victim"`
	Starved float64 `json:"starved"`
	// Threshold is the policy's.
	Threshold float64 `json:"threshold"`
}

// String says the figures in one line.
func (f Figures) String() string {
	return fmt.Sprintf("using %dm of a %dm request while %s starved %.0f%% (threshold %.0f%%)",
		f.Used, f.Request, f.Victim, f.Starved*100, f.Threshold*100)
}

// Step is one action the ladder takes on one replica.
type Step struct {
	ID      string  `json:"id"`
	Action  Action  `json:"action"`
	Figures Figures `json:"figures"`
}

// Reason says why the step was taken.
func (s Step) Reason() string {
	if s.Action == Release {
		return "node calm: burst given back"
	}
	return s.Figures.String()
}

// state is what the detector remembers of one replica.
type state struct {
	noisy int // samples in a row noisy (or, once on the ladder, starved)
	calm  int // samples in a row calm
	next  int // index of the next ladder action
	// throttled is true between a throttle and its release.
	throttled bool
	// last are the figures of the last noisy sample.
	last Figures
}

// Detector applies a Policy to successive samples of one node.
type Detector struct {
	p     Policy
	state map[string]*state
}

// New returns a detector for p (defaults filled).
func New(p Policy) *Detector {
	return &Detector{p: p.WithDefaults(), state: map[string]*state{}}
}

// Policy is the detector's policy, defaults filled.
func (d *Detector) Policy() Policy { return d.p }

// starved returns the most starved neighbour of s: its name and figure.
func (d *Detector) starved(s Sample, node Node, all []Sample) (string, float64) {
	victim, worst := "", 0.0
	for _, o := range all {
		if o.ID == s.ID {
			continue
		}
		if o.Pressure > worst {
			victim, worst = o.ID, o.Pressure
		}
		// Throttling the ladder itself applied is no neighbour's doing.
		if st := d.state[o.ID]; o.Throttled > worst && (st == nil || !st.throttled) {
			victim, worst = o.ID, o.Throttled
		}
	}
	// On cgroup v1 the node's pressure stands for every neighbour; it
	// counts only when there is a neighbour to starve.
	if len(all) > 1 && node.Pressure > worst {
		victim, worst = "node", node.Pressure
	}
	return victim, worst
}

// Observe takes one interval's samples of every replica on the node and
// returns the steps to take now, in the order of the samples. Replicas
// missing from samples are forgotten.
func (d *Detector) Observe(node Node, samples []Sample) []Step {
	var steps []Step
	seen := make(map[string]bool, len(samples))
	for _, s := range samples {
		seen[s.ID] = true
		st := d.state[s.ID]
		if st == nil {
			st = &state{}
			d.state[s.ID] = st
		}
		victim, starved := d.starved(s, node, samples)
		// Only a burstable replica can use more than its request: the
		// quota of one without limits is its request, and any excess
		// seen is the sampling's jitter.
		over := s.Used > s.Request && s.Limit > s.Request
		fig := Figures{Used: s.Used, Request: s.Request, Victim: victim, Starved: starved, Threshold: d.p.Threshold}
		onLadder := st.next > 0
		switch {
		case starved > d.p.Threshold && (over || onLadder):
			// Noisy, or still the suspect once on the ladder: a throttled
			// replica sits at its request, so "over" alone would let the
			// ladder stop at its first rung while the neighbour starves.
			st.noisy++
			st.calm = 0
			st.last = fig
		case starved <= d.p.Threshold/2:
			st.noisy = 0
			st.calm++
		default: // between the two thresholds: hold still
			st.noisy = 0
			st.calm = 0
		}
		if st.noisy >= d.p.Hold && st.next < len(d.p.Actions) {
			a := d.p.Actions[st.next]
			steps = append(steps, Step{ID: s.ID, Action: a, Figures: st.last})
			st.next++
			st.noisy = 0
			if a == Throttle {
				st.throttled = true
			}
			// Report costs nothing and says what the step before did: it
			// comes with it, not Hold samples later.
			for st.next < len(d.p.Actions) && d.p.Actions[st.next] == Report {
				steps = append(steps, Step{ID: s.ID, Action: Report, Figures: st.last})
				st.next++
			}
		}
		if st.next > 0 && st.calm >= d.p.Calm {
			if st.throttled {
				steps = append(steps, Step{ID: s.ID, Action: Release, Figures: fig})
			}
			*st = state{}
		}
	}
	for id := range d.state {
		if !seen[id] {
			delete(d.state, id)
		}
	}
	return steps
}

// Throttled lists the replicas the detector holds throttled, sorted.
func (d *Detector) Throttled() []string {
	var out []string
	for id, st := range d.state {
		if st.throttled {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// ParseActions parses a ladder as manifests write it.
func ParseActions(names []string) ([]Action, error) {
	out := make([]Action, 0, len(names))
	for i, n := range names {
		a := Action(strings.TrimSpace(n))
		if !slices.Contains(Actions, a) {
			return nil, fmt.Errorf("%w: actions[%d]: %q: use throttle, report or move", ErrInvalid, i, n)
		}
		out = append(out, a)
	}
	return out, nil
}
