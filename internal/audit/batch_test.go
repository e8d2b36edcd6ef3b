package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store"
)

// countingStore counts transactions.
type countingStore struct {
	store.Store
	txns atomic.Int64
}

func (c *countingStore) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, ops...)
}

// TestGroupCommit: concurrent appends share transactions (fewer commits
// than appends: one fsync for many), every acknowledged entry is stored
// with its own ops, the chain verifies, and an append whose precondition
// fails fails alone: the others of its group commit.
func TestGroupCommit(t *testing.T) {
	cs := &countingStore{Store: newStore(t)}
	l := audit.New(cs)
	ctx := t.Context()
	tenantRev, err := cs.Store.Put(ctx, "/tenants/acme", []byte("x"), store.Any)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Store.Put(ctx, "/tenants/acme/workloads/taken", []byte("x"), store.Any); err != nil {
		t.Fatal(err)
	}
	const n = 400
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		seqs  = map[uint64]bool{}
		fails int
	)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("/tenants/acme/workloads/w%d", i)
			if i%50 == 0 {
				key = "/tenants/acme/workloads/taken" // exists: Create fails
			}
			e, _, err := l.Append(ctx, audit.Record{Actor: "t", Tenant: "acme", Action: "apply", Object: key},
				store.PutOp(key, []byte("spec"), store.Create),
				store.CheckOp("/tenants/acme", tenantRev), // the same check by all: merged
			)
			mu.Lock()
			defer mu.Unlock()
			if i%50 == 0 {
				if !errors.Is(err, store.ErrExists) {
					t.Errorf("append %d on a taken key: %v, want ErrExists", i, err)
				}
				fails++
				return
			}
			if err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
			if seqs[e.Seq] {
				t.Errorf("seq %d acknowledged twice", e.Seq)
			}
			seqs[e.Seq] = true
			if _, err := cs.Store.Get(ctx, key); err != nil {
				t.Errorf("append %d acknowledged, its op not stored: %v", i, err)
			}
		})
	}
	wg.Wait()
	if fails != n/50 {
		t.Errorf("%d refused, want %d", fails, n/50)
	}
	sum, err := l.Verify(ctx)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if ok := n - n/50; len(seqs) != ok || sum.Entries != uint64(ok) {
		t.Errorf("%d acknowledged, %d in the chain; want %d", len(seqs), sum.Entries, ok)
	}
	t.Logf("%d appends in %d transactions", n, cs.txns.Load())
	if cs.txns.Load() >= n {
		t.Errorf("%d transactions for %d concurrent appends: no group commit", cs.txns.Load(), n)
	}
}
