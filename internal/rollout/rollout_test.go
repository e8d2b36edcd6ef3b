package rollout

import (
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNext(t *testing.T) {
	old := func(i int, ready bool) Replica { return Replica{Index: i, Ready: ready} }
	nw := func(i int, ready bool) Replica { return Replica{Index: i, New: true, Ready: ready} }
	tests := []struct {
		name string
		n    int
		lim  Limits
		rs   []Replica
		want Step
	}{
		{"surge first", 3, Limits{0, 1}, []Replica{old(0, true), old(1, true), old(2, true)}, Step{Surge: 1}},
		{"surge ready: replace one", 3, Limits{0, 1}, []Replica{old(0, true), old(1, true), old(2, true), nw(3, true)}, Step{Replace: []int{0}, Surge: 1}},
		{"replacement not ready yet: wait", 3, Limits{0, 1}, []Replica{nw(0, false), old(1, true), old(2, true), nw(3, true)}, Step{Surge: 1}},
		{"no surge, one unavailable", 3, Limits{1, 0}, []Replica{old(0, true), old(1, true), old(2, true)}, Step{Replace: []int{0}}},
		{"a broken old replica is replaced for free", 3, Limits{0, 1}, []Replica{old(0, true), old(1, false), old(2, true)}, Step{Replace: []int{1}, Surge: 1}},
		{"all new, surge still needed", 2, Limits{0, 1}, []Replica{nw(0, true), nw(1, false), nw(2, true)}, Step{Surge: 1}},
		{"all new and ready: surge goes", 2, Limits{0, 1}, []Replica{nw(0, true), nw(1, true), nw(2, true)}, Step{Surge: 0}},
		{"done", 2, Limits{0, 1}, []Replica{nw(0, true), nw(1, true)}, Step{Done: true}},
		{"blocked", 2, Limits{0, 0}, []Replica{old(0, true), old(1, true)}, Step{Blocked: "no replica may go down (maxUnavailable) and none may be added (maxSurge)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Next(tt.n, tt.lim, tt.rs)); diff != "" {
				t.Errorf("Next (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRolloutsHoldTheirBudget simulates rollouts: each round the planner
// applies Next; replicas it starts become ready a round or two later (or
// fail to, for a while). The ready count never drops below n - maxUnavailable
// because of a step, no more than n + maxSurge replicas exist, and every
// rollout finishes.
func TestRolloutsHoldTheirBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 3000 {
		n := 1 + r.IntN(8)
		lim := Limits{MaxUnavailable: r.IntN(3), MaxSurge: r.IntN(3)}
		if lim.MaxUnavailable == 0 && lim.MaxSurge == 0 {
			lim.MaxSurge = 1
		}
		type rep struct {
			Replica
			wait int // rounds until ready
		}
		reps := map[int]*rep{}
		for i := range n {
			reps[i] = &rep{Replica: Replica{Index: i, Ready: true}}
		}
		minReady := n - lim.MaxUnavailable
		for round := 0; ; round++ {
			if round > 200 {
				t.Fatalf("trial %d (n %d, %+v): not done after 200 rounds", trial, n, lim)
			}
			var rs []Replica
			ready := 0
			for _, x := range reps {
				rs = append(rs, x.Replica)
				if x.Ready {
					ready++
				}
			}
			st := Next(n, lim, rs)
			if st.Blocked != "" {
				t.Fatalf("trial %d: blocked: %s", trial, st.Blocked)
			}
			if st.Done {
				break
			}
			// Apply: replacements go down now, surge replicas beyond the
			// step's go too; the ready count after the step must hold (or
			// not fall, where it was already under: a replica failed).
			before := ready
			for _, i := range st.Replace {
				if reps[i].Ready {
					ready--
				}
				reps[i] = &rep{Replica: Replica{Index: i, New: true}, wait: 1 + r.IntN(3)}
			}
			for i := n; i < n+st.Surge; i++ {
				if reps[i] == nil {
					reps[i] = &rep{Replica: Replica{Index: i, New: true}, wait: 1 + r.IntN(3)}
				}
			}
			for i := range reps {
				if i >= n+st.Surge {
					if reps[i].Ready {
						ready--
					}
					delete(reps, i)
				}
			}
			if ready < min(minReady, before) {
				t.Fatalf("trial %d (n %d, %+v) round %d: a step left %d ready, under %d", trial, n, lim, round, ready, minReady)
			}
			if len(reps) > n+lim.MaxSurge {
				t.Fatalf("trial %d: %d replicas exist, over %d", trial, len(reps), n+lim.MaxSurge)
			}
			for _, x := range reps {
				if !x.Ready && x.wait > 0 {
					if x.wait--; x.wait == 0 {
						x.Ready = true
					}
				}
			}
		}
		for i := range n {
			if !reps[i].New || !reps[i].Ready {
				t.Fatalf("trial %d: done with replica %d %+v", trial, i, reps[i].Replica)
			}
		}
	}
}
