package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	if p := e.srv.Pipelined(); p != 0 {
		t.Errorf("%d batches prepared while another committed, without Config.PipelineBatches", p)
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

// holdingStore holds the next transaction until released, and can make
// it fail as if another process had written first.
type holdingStore struct {
	store.Store
	mu      sync.Mutex
	hold    chan struct{} // the next Txn waits for it to close
	entered chan struct{} // told when a Txn waits
	fail    bool          // the held Txn fails with ErrConflict
}

func (h *holdingStore) Txn(ctx context.Context, ops ...store.Op) (int64, error) {
	h.mu.Lock()
	hold, fail := h.hold, h.fail
	h.hold, h.fail = nil, false
	h.mu.Unlock()
	if hold != nil {
		h.entered <- struct{}{}
		<-hold
		if fail {
			return 0, fmt.Errorf("held transaction: %w", store.ErrConflict)
		}
	}
	return h.Store.Txn(ctx, ops...)
}

// TestPipelinedBatches: while one batch of a tenant's applies commits,
// the next is prepared on top of it; its answers name the revisions
// stored (an unchanged apply of an object the batch before wrote names
// that batch's), every apply has one audit entry, and when the batch
// before fails, the next one commits nothing it read from it: each of its
// applies runs again alone.
func TestPipelinedBatches(t *testing.T) {
	t.Parallel()
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("first commit fails=%v", fail), func(t *testing.T) {
			t.Parallel()
			var held *holdingStore
			var al *audit.Log
			e := newEnvWith(t, func(c *server.Config) {
				held = &holdingStore{Store: c.Store, entered: make(chan struct{}, 1)}
				al = audit.New(held)
				c.Store, c.Audit, c.PipelineBatches = held, al, true
			}).seed()
			ctx := t.Context()
			before, err := al.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			held.mu.Lock()
			held.hold, held.fail = release, fail
			held.mu.Unlock()
			var (
				wg   sync.WaitGroup
				mu   sync.Mutex
				revs = map[string]int64{} // answered, by name
				res  = map[string]string{}
			)
			apply := func(key, name string) {
				r := e.do("admin", http.MethodPut, "/v1/tenants/biology/workloads/"+name, workloadJSON("biology", name, 1))
				var a wire.ApplyResult
				if r.status/100 != 2 || json.Unmarshal(r.body, &a) != nil {
					t.Errorf("apply %s: %d %s", key, r.status, r.body)
					return
				}
				mu.Lock()
				revs[key], res[key] = a.Revision, a.Result
				mu.Unlock()
			}
			wg.Go(func() { apply("p0", "p0") })
			<-held.entered // p0's batch commits (held)
			for i := 1; i < 8; i++ {
				wg.Go(func() { apply("p"+itoa(i), "p"+itoa(i)) })
			}
			wg.Go(func() { apply("p0 again", "p0") })
			deadline := time.Now().Add(60 * time.Second)
			for e.srv.Pipelined() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if e.srv.Pipelined() == 0 {
				close(release)
				wg.Wait()
				t.Fatal("no batch prepared while the first one committed")
			}
			close(release)
			wg.Wait()
			if t.Failed() {
				return
			}
			for key, rev := range revs {
				name, _, _ := strings.Cut(key, " ")
				v, err := e.store.Get(ctx, "/workloads/biology/"+name)
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				if rev != v.Revision {
					t.Errorf("%s (%s): answered revision %d, stored %d", key, res[key], rev, v.Revision)
				}
			}
			if res["p0 again"] != wire.Unchanged && !fail {
				t.Errorf("p0 again: %s, want %s", res["p0 again"], wire.Unchanged)
			}
			after, err := al.Verify(ctx)
			if err != nil {
				t.Fatalf("audit chain: %v", err)
			}
			if got := after.Entries - before.Entries; got != 8 {
				t.Errorf("%d audit entries for 8 changes", got)
			}
		})
	}
}
