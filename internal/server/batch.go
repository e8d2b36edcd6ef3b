package server

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store"
)

// Batched applies (group commit of one tenant's writes). A tenant's
// workload writes are serialized (its guard key orders them, so quotas
// hold), which used to cost one store commit, one fsync, each. Applies
// that arrive while one commits now wait in a queue; the next one to hold
// the tenant's lock runs them all in order against an overlay (the store
// as seen with the earlier ones' writes: quotas are checked in memory, one
// after the other), then commits every change and its audit record in one
// transaction. If that transaction fails (another process wrote in
// between), each apply runs again alone, as before.

// pendingRev is the revision an overlay gives the batch's own writes until
// the batch commits (plus the batch's number in its stripe): far above any
// real one, and replaced by the real revision in every answer.
const pendingRev int64 = 1 << 62

// maxBatch bounds the applies of one batch (the store's limits on one
// transaction bound it further).
const maxBatch = 32

// maxBatchOps leaves room in a transaction for the audit entries and head.
const maxBatchOps = store.MaxTxnOps - maxBatch - 8

// overlay is a store as one batch sees it: reads fall through to the store
// except for the keys the batch wrote; writes are staged, checked against
// what the batch sees, and merged into one transaction at the end.
type overlay struct {
	store.Store
	pend   int64              // the revision the batch's own writes read at
	writes map[string]*staged // by key
	checks map[string]int64   // preconditions on keys the batch only read
	order  []string           // written keys, first write first
	recs   []audit.Record
	// gets and lists are the store's answers, read once per batch: every
	// apply of a tenant reads its tenant, guard, topologies and policies,
	// and on etcd each read is a round trip. A value another process
	// changes meanwhile is caught at commit all the same: each apply
	// checks the revisions it read (then each runs again alone).
	gets  map[string]cachedGet
	lists map[string]cachedList
}

type cachedGet struct {
	v   store.Value
	err error // nil or store.ErrNotFound
}

type cachedList struct {
	vals []store.Value
	rev  int64
}

type staged struct {
	data    []byte
	deleted bool
	first   int64 // the first write's expectation against the store
}

func newOverlay(st store.Store) *overlay {
	return &overlay{Store: st, pend: pendingRev, writes: map[string]*staged{}, checks: map[string]int64{},
		gets: map[string]cachedGet{}, lists: map[string]cachedList{}}
}

func (o *overlay) Get(ctx context.Context, key string) (store.Value, error) {
	if w, ok := o.writes[key]; ok {
		if w.deleted {
			return store.Value{}, fmt.Errorf("get %s: %w", key, store.ErrNotFound)
		}
		return store.Value{Key: key, Data: w.data, Revision: o.pend}, nil
	}
	if c, ok := o.gets[key]; ok {
		return c.v, c.err
	}
	v, err := o.Store.Get(ctx, key)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		o.gets[key] = cachedGet{v, err}
	}
	return v, err
}

func (o *overlay) List(ctx context.Context, dir string) ([]store.Value, int64, error) {
	c, ok := o.lists[dir]
	if !ok {
		vals, rev, err := o.Store.List(ctx, dir)
		if err != nil {
			return nil, 0, err
		}
		c = cachedList{vals, rev}
		o.lists[dir] = c
	}
	vals, rev := slices.Clone(c.vals), c.rev // callers may reorder theirs
	prefix := strings.TrimSuffix(dir, "/") + "/"
	mine := false
	for k := range o.writes {
		mine = mine || strings.HasPrefix(k, prefix)
	}
	if !mine {
		return vals, rev, nil
	}
	byKey := map[string]store.Value{}
	for _, v := range vals {
		byKey[v.Key] = v
	}
	for k, w := range o.writes {
		switch {
		case !strings.HasPrefix(k, prefix):
		case w.deleted:
			delete(byKey, k)
		default:
			byKey[k] = store.Value{Key: k, Data: w.data, Revision: o.pend}
		}
	}
	out := make([]store.Value, 0, len(byKey))
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		out = append(out, byKey[k])
	}
	return out, rev, nil
}

// forgetPending drops the reads that named another batch's pending
// writes (that batch is committed now, or failed): they are read again
// from the store.
func (o *overlay) forgetPending() {
	for k, g := range o.gets {
		if g.err == nil && g.v.Revision >= pendingRev {
			delete(o.gets, k)
		}
	}
	for d, l := range o.lists {
		if slices.ContainsFunc(l.vals, func(v store.Value) bool { return v.Revision >= pendingRev }) {
			delete(o.lists, d)
		}
	}
}

// errDirect: a batched apply wrote around commit (a bug: it would escape
// the batch's transaction).
var errDirect = errors.New("batched apply: direct store write")

func (o *overlay) Put(context.Context, string, []byte, int64) (int64, error) {
	return 0, fmt.Errorf("%w: %w", errDirect, store.ErrInvalid)
}

func (o *overlay) Delete(context.Context, string, int64) (int64, error) {
	return 0, fmt.Errorf("%w: %w", errDirect, store.ErrInvalid)
}

func (o *overlay) Txn(context.Context, ...store.Op) (int64, error) {
	return 0, fmt.Errorf("%w: %w", errDirect, store.ErrInvalid)
}

// stage checks ops' preconditions against what the batch sees and, when
// all hold, records them with rec: all or nothing, as a Txn.
func (o *overlay) stage(ctx context.Context, rec audit.Record, ops []store.Op) error {
	cur := make([]int64, len(ops)) // 0: absent
	for i, op := range ops {
		v, err := o.Get(ctx, op.Key)
		switch {
		case err == nil:
			cur[i] = v.Revision
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		switch {
		case op.Expect == store.Create && cur[i] != 0:
			return fmt.Errorf("op %d (%s): %w", i, op.Key, store.ErrExists)
		case op.Expect > 0 && op.Expect != cur[i]:
			return fmt.Errorf("op %d (%s): %w", i, op.Key, store.ErrConflict)
		case op.Kind == store.OpDelete && op.Expect == store.Any && cur[i] == 0:
			return fmt.Errorf("op %d (%s): %w", i, op.Key, store.ErrNotFound)
		}
	}
	for _, op := range ops {
		w, written := o.writes[op.Key]
		if op.Kind == store.OpCheck {
			if !written {
				o.checks[op.Key] = op.Expect
			}
			continue
		}
		if !written {
			first := op.Expect
			if c, ok := o.checks[op.Key]; ok {
				first = c // the batch read it at this revision
				delete(o.checks, op.Key)
			}
			w = &staged{first: first}
			o.writes[op.Key] = w
			o.order = append(o.order, op.Key)
		}
		w.data, w.deleted = op.Data, op.Kind == store.OpDelete
	}
	o.recs = append(o.recs, rec)
	return nil
}

// ops is the batch's one transaction: each written key's last value with
// its first expectation, and the checks of the keys it only read.
func (o *overlay) ops() []store.Op {
	var out []store.Op
	for _, k := range o.order {
		w := o.writes[k]
		switch {
		case w.deleted && w.first == store.Create:
			out = append(out, store.CheckOp(k, store.Create)) // made and removed
		case w.deleted:
			out = append(out, store.DeleteOp(k, w.first))
		default:
			out = append(out, store.PutOp(k, w.data, w.first))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.checks)) {
		out = append(out, store.CheckOp(k, o.checks[k]))
	}
	return out
}

// batchKey carries a batch's overlay in a request's context.
type batchKey struct{}

// st is the store a write's reads go to: the batch's overlay when batched.
func (s *Server) st(ctx context.Context) store.Store {
	if o, ok := ctx.Value(batchKey{}).(*overlay); ok {
		return o
	}
	return s.store
}

// batchLog is an audit log that commits several records with one change
// (*audit.Log is one).
type batchLog interface {
	AppendAll(ctx context.Context, rs []audit.Record, ops ...store.Op) ([]audit.Entry, int64, error)
}

// queued is one apply waiting for its batch.
type queued struct {
	ctx     context.Context
	attempt func(context.Context) error
	res     chan error // buffered
	taken   bool       // in a batch (under applyQueue.mu)
	// resolve turns a pending revision in attempt's answer into the real
	// one, set before res (nil: none to turn).
	resolve func(int64) int64
}

// applyQueue is one lock stripe's waiting applies, and its pipeline: a
// batch is prepared with the stripe's lock (tenantLocks) held, then
// committed with commitMu held. With Config.PipelineBatches, commitMu is
// taken before the stripe's lock is let go, so the next batch is
// prepared, on top of this one's overlay, while this one commits, and
// batches commit in the order they were prepared; without, the stripe's
// lock is held through the commit.
type applyQueue struct {
	mu sync.Mutex
	q  []*queued

	commitMu sync.Mutex
	last     *batchRun // the batch prepared last (under the stripe's lock)
	seq      int64     // batches prepared (under the stripe's lock)
}

// batchRun is one batch on its way to the store.
type batchRun struct {
	o      *overlay
	parent *batchRun // the batch committing while this one was prepared
	in     []*queued // staged in o
	alone  []*queued // to run again alone after the commit
	// Set before done.
	ok  bool  // committed (or nothing to commit)
	rev int64 // the commit's revision
	// done is set once the batch and its lone members are through.
	done atomic.Bool
}

// batched runs attempt (a read-check-commit of one tenant's write that
// commits through s.commit) in the tenant's next batch. It returns the
// function that turns a pending revision in attempt's answer into the
// real one (nil when there is none to turn: attempt ran alone, or
// committed nothing).
func (s *Server) batched(ctx context.Context, tenant string, attempt func(context.Context) error) (func(int64) int64, error) {
	if _, ok := s.audit.(batchLog); !ok {
		return nil, s.retry(ctx, tenant, func() error { return attempt(ctx) })
	}
	i := maphash.String(s.lockSeed, tenant) % uint64(len(s.tenantLocks))
	q, mu := &s.applyQueues[i], &s.tenantLocks[i]
	me := &queued{ctx: ctx, attempt: attempt, res: make(chan error, 1)}
	q.mu.Lock()
	q.q = append(q.q, me)
	q.mu.Unlock()
	for {
		mu.Lock()
		q.mu.Lock()
		if me.taken {
			q.mu.Unlock()
			mu.Unlock()
			break
		}
		n := min(len(q.q), maxBatch)
		batch := q.q[:n:n]
		q.q = q.q[n:]
		for _, m := range batch {
			m.taken = true
		}
		q.mu.Unlock()
		run := s.prepareBatch(q, batch)
		q.commitMu.Lock() // after the batch before
		if s.pipeline {
			mu.Unlock() // the next may prepare while this one commits
		}
		s.commitBatch(run)
		q.commitMu.Unlock()
		if !s.pipeline {
			mu.Unlock()
		}
	}
	err := <-me.res
	return me.resolve, err
}

// prepareBatch runs batch's applies in order on one overlay, on top of
// the batch still committing if there is one; the stripe's lock is held.
func (s *Server) prepareBatch(q *applyQueue, batch []*queued) *batchRun {
	run := &batchRun{}
	var base store.Store = s.store
	if p := q.last; p != nil && !p.done.Load() {
		// p commits meanwhile. The batch before p is through (p took
		// commitMu after it), so p's overlay now reads the store, and
		// drops what it read through that batch: only p's own writes
		// are pending below this batch.
		p.o.Store = s.store
		p.o.forgetPending()
		run.parent, base = p, p.o
		s.pipelined.Add(1)
	}
	q.seq++
	run.o = newOverlay(base)
	run.o.pend = pendingRev + q.seq
	q.last = run
	for _, m := range batch {
		if err := m.ctx.Err(); err != nil {
			m.res <- err
			continue
		}
		if len(run.o.ops()) >= maxBatchOps {
			run.alone = append(run.alone, m) // no room: after the batch
			continue
		}
		err := m.attempt(context.WithValue(m.ctx, batchKey{}, run.o))
		switch {
		case retryable(err):
			run.alone = append(run.alone, m) // lost a race with another process
		case err != nil:
			m.res <- err
		default:
			// Done when the batch commits (an unchanged answer may name
			// an earlier member's write).
			run.in = append(run.in, m)
		}
	}
	return run
}

// commitBatch commits what run's applies wrote at once, once the batch it
// was prepared on is through; commitMu is held.
func (s *Server) commitBatch(run *batchRun) {
	defer run.done.Store(true)
	o, in, p := run.o, run.in, run.parent
	ops, ok := o.ops(), true
	if p != nil {
		// What this batch read of p's writes, p committed at p.rev; if p
		// failed, this batch saw writes that are not there: all again.
		ok = p.ok && resolveOps(ops, p.o.pend, p.rev)
	}
	switch {
	case !ok:
		run.alone = append(in, run.alone...)
	case len(o.recs) == 0:
		run.ok = true
		for _, m := range in {
			m.resolve = p.resolver(o.pend, 0)
			m.res <- nil
		}
	default:
		_, rev, err := s.audit.(batchLog).AppendAll(context.WithoutCancel(in[0].ctx), o.recs, ops...)
		switch {
		case err == nil:
			run.ok, run.rev = true, rev
			for _, m := range in {
				m.resolve = p.resolver(o.pend, rev)
				m.res <- nil
			}
		case errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrClosed):
			for _, m := range in {
				m.res <- err // no one would do better alone now
			}
		default:
			// A race with another process, a limit, or one member's bad
			// op: each again, on its own, so none fails for another.
			run.alone = append(in, run.alone...)
		}
	}
	for _, m := range run.alone {
		m.res <- s.retryLocked(m.ctx, func() error { return m.attempt(m.ctx) })
	}
}

// resolver turns the pending revisions an answer of the batch after p may
// name (its own, mine, or p's, parent) into real ones.
func (p *batchRun) resolver(mine, rev int64) func(int64) int64 {
	var ppend, prev int64 = -1, 0
	if p != nil {
		ppend, prev = p.o.pend, p.rev
	}
	return func(r int64) int64 {
		switch r {
		case mine:
			return rev
		case ppend:
			return prev
		}
		return r
	}
}

// resolveOps replaces, in ops' expectations, the pending revision pend of
// the batch before with its real revision rev; false if an expectation is
// another pending revision (read through a batch that is gone).
func resolveOps(ops []store.Op, pend, rev int64) bool {
	for i := range ops {
		switch e := ops[i].Expect; {
		case e == pend:
			ops[i].Expect = rev
		case e >= pendingRev:
			return false
		}
	}
	return true
}
