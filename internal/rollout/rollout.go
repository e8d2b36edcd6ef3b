// Package rollout decides, step by step, how a workload's replicas move
// from one template (image, command, environment…) to the next without
// breaking its availability budget (DESIGN §8: spec.rollout maxUnavailable
// and maxSurge, defaults 0 and 1), as a Kubernetes Deployment's rolling
// update does, but keeping each replica's index (as a StatefulSet): an old
// replica is replaced in place, and surge replicas take extra indices
// (n, n+1, …) for the time of the rollout. It is pure: the planner feeds
// it what the nodes report and acts on its answer.
package rollout

import "slices"

// Replica is one replica of a rolling workload: its index, whether it runs
// the new template, and whether its node reports it ready.
type Replica struct {
	Index int
	New   bool
	Ready bool
}

// Limits are a workload's spec.rollout, defaults applied.
type Limits struct {
	MaxUnavailable int
	MaxSurge       int
}

// Step is what to do now.
type Step struct {
	// Replace are the indices below n whose old replica is replaced by a
	// new one now (stopped, then started with the new template).
	Replace []int
	// Surge is how many extra replicas (indices n, n+1, …) on the new
	// template should exist now.
	Surge int
	// Done: every replica below n runs the new template and no surge
	// replica is left.
	Done bool
	// Blocked says why no step can be taken, when none can.
	Blocked string
}

// Next is the next step for a workload of n replicas under lim, given its
// replicas now (below n, and surge replicas at n and above). Never fewer
// than n - MaxUnavailable replicas are ready because of it, and never more
// than n + MaxSurge exist: a replica that is not ready is replaced at no
// cost, a ready one only while the ready count allows, and surge replicas
// stay until every replica below n is new and ready.
func Next(n int, lim Limits, rs []Replica) Step {
	minReady := max(n-lim.MaxUnavailable, 0)
	ready, surgeReady, surgeNow := 0, 0, 0
	var oldReady, oldDown []int
	allNewReady := true
	for _, r := range rs {
		if r.Ready {
			ready++
		}
		if r.Index >= n {
			surgeNow++
			if r.Ready {
				surgeReady++
			}
			continue
		}
		switch {
		case r.New:
			allNewReady = allNewReady && r.Ready
		case r.Ready:
			oldReady = append(oldReady, r.Index)
			allNewReady = false
		default:
			oldDown = append(oldDown, r.Index)
			allNewReady = false
		}
	}
	slices.Sort(oldReady)
	slices.Sort(oldDown)
	if len(oldReady)+len(oldDown) == 0 {
		// Every replica below n is new: the surge goes once it is not
		// needed for the ready count.
		if surgeNow == 0 {
			return Step{Done: allNewReady}
		}
		if allNewReady || ready-surgeReady >= minReady {
			return Step{Surge: 0}
		}
		return Step{Surge: surgeNow}
	}
	// Surge replicas stay while old ones remain (removing a ready one
	// would spend the ready count); no more than there are old ones.
	st := Step{Surge: max(min(lim.MaxSurge, len(oldReady)+len(oldDown)), surgeNow)}
	// A replica that is not ready costs nothing to replace.
	st.Replace = append(st.Replace, oldDown...)
	for budget := ready - minReady; budget > 0 && len(oldReady) > 0; budget-- {
		st.Replace = append(st.Replace, oldReady[0])
		oldReady = oldReady[1:]
	}
	if len(st.Replace) == 0 && lim.MaxUnavailable <= 0 && lim.MaxSurge <= 0 {
		// Otherwise an empty step waits for replicas to become ready.
		st.Blocked = "no replica may go down (maxUnavailable) and none may be added (maxSurge)"
	}
	return st
}
