package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/store"
)

// LeaderDir is where the control planes campaign, below the store's
// prefix: one key per campaigner, held by its etcd lease.
const LeaderDir = "/leader"

// Elector is leader.Elector on etcd's election recipe (concurrency
// package): each campaigner holds a session lease of TTL; the oldest key
// leads; a leader whose process stops or is cut off loses its key when the
// lease expires, and the next campaigner leads.
type Elector struct {
	st  *Store
	id  string
	ttl time.Duration

	mu   sync.Mutex
	sess *concurrency.Session
}

var _ leader.Elector = (*Elector)(nil)

// Elector returns an elector on st for a campaigner named id, whose
// leadership outlives it by at most ttl (rounded up to whole seconds, at
// least 1 s).
func (s *Store) Elector(id string, ttl time.Duration) *Elector {
	return &Elector{st: s, id: id, ttl: ttl}
}

// SetID renames the campaigner for its next campaign (say, once its
// address is known).
func (e *Elector) SetID(id string) {
	e.mu.Lock()
	e.id = id
	e.mu.Unlock()
}

// Campaign implements leader.Elector.
func (e *Elector) Campaign(ctx context.Context) (*leader.Term, error) {
	if err := e.st.usable(ctx); err != nil {
		return nil, err
	}
	e.mu.Lock()
	id := e.id
	e.mu.Unlock()
	secs := max(1, int((e.ttl+time.Second-1)/time.Second))
	// The session outlives the campaign's ctx: it ends with Resign, Close
	// or the lease's expiry (keep-alives that get no answer for a TTL).
	sess, err := concurrency.NewSession(e.st.cli, concurrency.WithTTL(secs), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("campaign: session: %w", e.st.mapErr(err))
	}
	el := concurrency.NewElection(sess, e.st.prefix+LeaderDir)
	if err := el.Campaign(ctx, id); err != nil {
		_ = sess.Close() // revokes the lease, so the key goes too
		return nil, fmt.Errorf("campaign: %w", e.st.mapErr(err))
	}
	e.mu.Lock()
	e.sess = sess
	e.mu.Unlock()
	key := strings.TrimPrefix(el.Key(), e.st.prefix)
	resign := func(ctx context.Context) error {
		err := el.Resign(ctx)
		e.mu.Lock()
		if e.sess == sess {
			e.sess = nil
		}
		e.mu.Unlock()
		return errors.Join(err, sess.Close())
	}
	return leader.NewTerm(leader.Info{ID: id, Term: el.Rev()}, key, sess.Done(), resign), nil
}

// Leader implements leader.Elector: the oldest campaigner's key.
func (e *Elector) Leader(ctx context.Context) (leader.Info, error) {
	if err := e.st.usable(ctx); err != nil {
		return leader.Info{}, err
	}
	resp, err := e.st.cli.Get(ctx, e.st.prefix+LeaderDir+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return leader.Info{}, fmt.Errorf("leader: %w", e.st.mapErr(err))
	}
	if len(resp.Kvs) == 0 {
		return leader.Info{}, nil
	}
	return leader.Info{ID: string(resp.Kvs[0].Value), Term: resp.Kvs[0].CreateRevision}, nil
}

// Close implements leader.Elector: it revokes the session of a term still
// held, so another campaigner leads at once. The store stays open.
func (e *Elector) Close() error {
	e.mu.Lock()
	sess := e.sess
	e.sess = nil
	e.mu.Unlock()
	if sess == nil {
		return nil
	}
	if err := sess.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("elector: close session: %w", store.ErrUnavailable)
	}
	return nil
}
