package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/server"
	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// txnCounter counts the store's transactions.
type txnCounter struct {
	store.Store
	n atomic.Int64
}

func (c *txnCounter) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	c.n.Add(1)
	return c.Store.Txn(ctx, ops...)
}

// TestBatchedApplies: one tenant's concurrent workload applies share
// commits (fewer transactions than applies), and each answer is still
// exact: the revision it names is the stored one, every apply has its
// audit entry in a chain that verifies, and quotas hold (checked in order
// within a batch: TestConcurrentQuota).
func TestBatchedApplies(t *testing.T) {
	t.Parallel()
	var counted *txnCounter
	var al *audit.Log
	e := newEnvWith(t, func(c *server.Config) {
		counted = &txnCounter{Store: c.Store}
		al = audit.New(counted)
		c.Store, c.Audit = counted, al
	}).seed()
	ctx := t.Context()
	before, _ := al.Verify(ctx)
	counted.n.Store(0)
	const n = 40 // 40 one-replica workloads: biology's quota has room
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		revs = map[string]int64{}
	)
	for i := range n {
		wg.Go(func() {
			name := "b" + itoa(i)
			r := e.do("admin", http.MethodPut, "/v1/tenants/biology/workloads/"+name, workloadJSON("biology", name, 1))
			var res wire.ApplyResult
			if r.status != http.StatusCreated || json.Unmarshal(r.body, &res) != nil {
				t.Errorf("apply %s: %d %s", name, r.status, r.body)
				return
			}
			mu.Lock()
			revs[name] = res.Revision
			mu.Unlock()
		})
	}
	wg.Wait()
	txns := counted.n.Load()
	t.Logf("%d applies in %d transactions", n, txns)
	if txns >= n {
		t.Errorf("%d transactions for %d concurrent applies of one tenant: not batched", txns, n)
	}
	for name, rev := range revs {
		v, err := e.store.Get(ctx, "/workloads/biology/"+name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.Revision != rev {
			t.Errorf("%s: answered revision %d, stored %d", name, rev, v.Revision)
		}
	}
	after, err := al.Verify(ctx)
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	if got := after.Entries - before.Entries; got < n {
		t.Errorf("%d audit entries for %d applies", got, n)
	}
}
