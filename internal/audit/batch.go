package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"rung.dev/rung/internal/store"
)

// Group commit: appends that arrive while another commits wait in a queue;
// the next committer takes them all and writes them as one store
// transaction, each entry chained after the previous one, each with its
// own ops (as etcd's and bbolt's batching do). A group whose transaction
// fails (one member's precondition, say) is committed again member by
// member, so that each gets its own answer and no member fails for
// another's sake.

// pending is one Append waiting for its commit.
type pending struct {
	rs      []Record
	details []json.RawMessage
	ops     []store.Op
	done    chan result // buffered: the committer never blocks
}

type result struct {
	es  []Entry
	rev int64
	err error
}

// maxGroup bounds the appends of one group; the store's limits on a
// transaction's operations and bytes bound it further (fits).
const maxGroup = 64

// group queues p and returns its result, committing the queue itself if
// no one else is.
func (l *Log) group(ctx context.Context, p *pending) ([]Entry, int64, error) {
	l.qmu.Lock()
	l.queue = append(l.queue, p)
	l.qmu.Unlock()
	l.mu.Lock()
	select {
	case r := <-p.done: // a committer before us took p
		l.mu.Unlock()
		return r.es, r.rev, r.err
	default:
	}
	for {
		l.qmu.Lock()
		batch := l.queue
		l.queue = nil
		l.qmu.Unlock()
		if len(batch) == 0 {
			break
		}
		// The group commits for everyone in it: one member's cancelled
		// request does not fail the others (the store's own deadline
		// still bounds the call).
		l.commitGroups(context.WithoutCancel(ctx), batch)
		if len(p.done) > 0 {
			break
		}
	}
	l.mu.Unlock()
	r := <-p.done
	return r.es, r.rev, r.err
}

// commitGroups commits batch in order, as groups that fit one transaction.
func (l *Log) commitGroups(ctx context.Context, batch []*pending) {
	for len(batch) > 0 {
		n := fits(batch)
		l.commitGroup(ctx, batch[:n])
		batch = batch[n:]
	}
}

// fits is how many of batch's first members can share a transaction: at
// most maxGroup, within the store's limits, and no key written or checked
// by two of them (a store transaction names a key once) unless both check
// it at the same revision.
func fits(batch []*pending) int {
	keys := map[string]store.Op{}
	ops, size := 1, 0 // the head
	for i, p := range batch {
		if i == maxGroup {
			return i
		}
		pops, psize := len(p.rs), 0 // its entries
		for _, op := range p.ops {
			if prev, ok := keys[op.Key]; ok && !(prev.Kind == store.OpCheck && op.Kind == store.OpCheck && prev.Expect == op.Expect) {
				return max(i, 1)
			}
			pops++
			psize += len(op.Key) + len(op.Data)
		}
		for _, d := range p.details {
			psize += len(d) + 4<<10 // the entry with its fields, generously
		}
		if i > 0 && (ops+pops > store.MaxTxnOps || size+psize > store.MaxTxnSize/2) {
			return i
		}
		for _, op := range p.ops {
			keys[op.Key] = op
		}
		ops, size = ops+pops, size+psize
	}
	return len(batch)
}

// commitGroup commits members as one transaction, or one by one when that
// fails for a reason other than the head having moved.
func (l *Log) commitGroup(ctx context.Context, members []*pending) {
	if len(members) == 1 {
		es, rev, err := l.appendOne(ctx, members[0])
		members[0].done <- result{es, rev, err}
		return
	}
	for range maxAttempts {
		head, headRev, err := l.head(ctx)
		if err != nil {
			l.fail(members, fmt.Errorf("audit append: %w", err))
			return
		}
		var (
			txn     []store.Op
			entries = make([][]Entry, len(members))
			checked = map[string]bool{}
		)
		for i, p := range members {
			es, eops, err := l.link(head, p)
			if err != nil {
				l.fail(members, err)
				return
			}
			last := es[len(es)-1]
			entries[i], head = es, Head{Seq: last.Seq, Hash: last.Hash}
			for _, op := range p.ops {
				if op.Kind == store.OpCheck {
					if checked[op.Key] {
						continue // the same check by an earlier member
					}
					checked[op.Key] = true
				}
				txn = append(txn, op)
			}
			txn = append(txn, eops...)
		}
		last := entries[len(entries)-1]
		txn, err = l.withHead(txn, last[len(last)-1], headRev)
		if err != nil {
			l.fail(members, err)
			return
		}
		rev, err := l.s.Txn(ctx, txn...)
		if err == nil {
			for i, p := range members {
				p.done <- result{entries[i], rev, nil}
			}
			return
		}
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			if _, now, herr := l.head(ctx); herr == nil && now != headRev {
				continue // another writer appended: chain after it
			}
		}
		// A member's precondition (or a limit) failed: each on its own.
		for _, p := range members {
			es, rev, err := l.appendOne(ctx, p)
			p.done <- result{es, rev, err}
		}
		return
	}
	l.fail(members, fmt.Errorf("audit append: head kept moving after %d attempts: %w", maxAttempts, store.ErrConflict))
}

func (l *Log) fail(members []*pending, err error) {
	for _, p := range members {
		p.done <- result{err: err}
	}
}
