// Package agent reconciles the replicas this node should run (from the
// control plane's plan) with what its runtimes actually run: it starts the
// missing, restarts the stopped with back-off, replaces the changed,
// adopts what survived an agent restart, and removes orphans, so a crash
// never leaks or duplicates a container.
package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"time"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
)

// Observed is a replica the node has, as its runtime reports it.
type Observed struct {
	Spec   replica.Spec
	Status runtime.Status // "" when the runtime has no container (a bundle left behind)
	Exit   int
	// Healthcheck is the check the node resolved for it (nil: none).
	Healthcheck *replica.Healthcheck
}

// ActionKind is what to do with one replica.
type ActionKind string

// The actions, in the order Plan returns them (removals first frees room).
const (
	Remove  ActionKind = "remove"  // not desired here any more (an orphan)
	Replace ActionKind = "replace" // desired with another spec: remove, then start
	Restart ActionKind = "restart" // desired and stopped: remove, then start again
	Start   ActionKind = "start"   // desired and missing
	Adopt   ActionKind = "adopt"   // desired and running as specified: keep it
)

// Action is one step of a reconciliation.
type Action struct {
	Kind ActionKind
	ID   string
	Spec replica.Spec // the desired spec (Start, Replace, Restart, Adopt)
	Why  string
}

// Hash identifies a spec's content, so a changed spec means a new replica.
// The site's admission rules are left out: a new rule applies to the next
// start, it does not restart every replica.
func Hash(s replica.Spec) string {
	s.Admission = nil
	s.Noisy = nil // a new ladder applies to running replicas as they are
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Plan compares desired and observed replicas and returns the actions,
// removals first, each group sorted by id. It is pure: back-off timing is
// decided by the caller (see Backoff).
func Plan(desired []replica.Spec, observed []Observed) []Action {
	want := map[string]replica.Spec{}
	for _, s := range desired {
		want[s.ID] = s
	}
	have := map[string]Observed{}
	for _, o := range observed {
		have[o.Spec.ID] = o
	}
	var out []Action
	for id := range have {
		if _, ok := want[id]; !ok {
			out = append(out, Action{Kind: Remove, ID: id, Why: "not desired on this node"})
		}
	}
	for id, s := range want {
		o, ok := have[id]
		switch {
		case !ok:
			out = append(out, Action{Kind: Start, ID: id, Spec: s, Why: "desired, not running"})
		case Hash(o.Spec) != Hash(s):
			out = append(out, Action{Kind: Replace, ID: id, Spec: s, Why: "spec changed"})
		case o.Status == runtime.Running || o.Status == runtime.Created:
			out = append(out, Action{Kind: Adopt, ID: id, Spec: s, Why: "running as specified"})
		default:
			why := "stopped"
			if o.Status == "" {
				why = "no container (left over from a crash)"
			}
			out = append(out, Action{Kind: Restart, ID: id, Spec: s, Why: why})
		}
	}
	rank := map[ActionKind]int{Remove: 0, Replace: 1, Restart: 2, Start: 3, Adopt: 4}
	sort.Slice(out, func(a, b int) bool {
		if rank[out[a].Kind] != rank[out[b].Kind] {
			return rank[out[a].Kind] < rank[out[b].Kind]
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// Backoff tracks restarts per replica, like Kubernetes' crash-loop
// back-off: the first restart is immediate, then 1s, 2s, 4s … up to Max;
// a replica that ran for a long time (over twice Max between starts) is
// forgiven.
type Backoff struct {
	Base, Max time.Duration
	next      map[string]time.Time
	delay     map[string]time.Duration
	started   map[string]time.Time
}

// NewBackoff returns a Backoff with the given base and cap.
func NewBackoff(base, max time.Duration) *Backoff {
	return &Backoff{Base: base, Max: max, next: map[string]time.Time{}, delay: map[string]time.Duration{}, started: map[string]time.Time{}}
}

// Ready reports whether id may be restarted at now.
func (b *Backoff) Ready(id string, now time.Time) bool { return !now.Before(b.next[id]) }

// Started records a (re)start of id at now and schedules the earliest next
// restart.
func (b *Backoff) Started(id string, now time.Time) {
	d, seen := b.delay[id]
	if s, ok := b.started[id]; ok && now.Sub(s) > 2*b.Max {
		d, seen = 0, false // it ran long enough: forgive
	}
	switch {
	case !seen:
		d = 0
	case d == 0:
		d = b.Base
	default:
		d = min(2*d, b.Max)
	}
	b.delay[id], b.started[id], b.next[id] = d, now, now.Add(d)
}

// Forget drops id's history (the replica is gone).
func (b *Backoff) Forget(id string) {
	delete(b.next, id)
	delete(b.delay, id)
	delete(b.started, id)
}
