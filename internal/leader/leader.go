// Package leader decides which of several control planes on one store
// schedules (DESIGN §11): one leads and writes the plan, the others serve
// reads. A leader's writes carry a fence, a store precondition on its
// leadership key, so that a leader that lost its term (a paused process, a
// partition) can no longer write anything: the store refuses.
package leader

import (
	"context"
	"errors"
	"sync"

	"rung.dev/rung/internal/store"
)

// ErrNotLeader: this process does not lead (now), so it may not schedule.
var ErrNotLeader = errors.New("not the leader")

// Elector elects one leader among the control planes sharing a store.
type Elector interface {
	// Campaign blocks until this process leads, then returns its term; it
	// fails only when ctx ends or the store refuses the campaign.
	Campaign(ctx context.Context) (*Term, error)
	// Leader names the current leader ("" when none leads).
	Leader(ctx context.Context) (Info, error)
	// Close resigns any term and releases the elector's resources.
	Close() error
}

// Info is who leads.
type Info struct {
	// ID names the leader (its host and address, as it campaigned).
	ID string `json:"id"`
	// Term is the store revision its leadership began at; a later leader
	// always has a higher one.
	Term int64 `json:"term"`
}

// Term is one leadership. It ends when Done is closed (the store lease
// expired or was revoked) or at Resign.
type Term struct {
	Info
	// Key is the leadership key in the store ("" for a Solo term, which
	// needs no fence); its revision is Info.Term while the term lasts.
	Key    string
	done   <-chan struct{}
	resign func(context.Context) error
	once   sync.Once
	err    error
}

// NewTerm makes a term; for electors.
func NewTerm(info Info, key string, done <-chan struct{}, resign func(context.Context) error) *Term {
	return &Term{Info: info, Key: key, done: done, resign: resign}
}

// Done is closed when the term ends without Resign.
func (t *Term) Done() <-chan struct{} { return t.done }

// Fence returns the store precondition that makes a Txn apply only while
// this term lasts (none for a Solo term).
func (t *Term) Fence() []store.Op {
	if t == nil || t.Key == "" {
		return nil
	}
	return []store.Op{store.CheckOp(t.Key, t.Term)}
}

// Resign ends the term, letting another campaigner lead at once.
func (t *Term) Resign(ctx context.Context) error {
	t.once.Do(func() {
		if t.resign != nil {
			t.err = t.resign(ctx)
		}
	})
	return t.err
}

// Solo is the elector of a store only one process can open (the embedded
// bbolt file is locked): that process always leads.
type Solo struct {
	ID string
}

// Campaign returns a term that never ends.
func (s Solo) Campaign(ctx context.Context) (*Term, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return NewTerm(Info{ID: s.ID, Term: 1}, "", nil, nil), nil
}

// Leader is s.
func (s Solo) Leader(context.Context) (Info, error) { return Info{ID: s.ID, Term: 1}, nil }

// Close does nothing.
func (Solo) Close() error { return nil }
