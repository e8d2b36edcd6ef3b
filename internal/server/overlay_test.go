package server

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/audit"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/bolt"
)

// TestOverlay: a batch sees its own writes (Get, List), checks each
// member's preconditions against them, refuses a member whose
// precondition fails without staging any of its ops, and merges what it
// staged into one transaction: each key's last value with its first
// expectation, reads' checks only for keys it did not write.
func TestOverlay(t *testing.T) {
	st, err := bolt.Open(t.TempDir(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	tenantRev, _ := st.Put(ctx, "/tenants/acme", []byte("t"), store.Any)
	guardRev, _ := st.Put(ctx, "/guards/acme", []byte("{}"), store.Any)
	oldRev, _ := st.Put(ctx, "/workloads/acme/old", []byte("old"), store.Any)

	o := newOverlay(st)
	rec := audit.Record{Action: "apply"}
	stage := func(ops ...store.Op) error { return o.stage(ctx, rec, ops) }
	if err := stage(store.CheckOp("/tenants/acme", tenantRev), store.PutOp("/guards/acme", []byte("{}"), guardRev),
		store.PutOp("/workloads/acme/a", []byte("a1"), store.Create)); err != nil {
		t.Fatal(err)
	}
	// The next member sees a and the guard at the batch's revision.
	g, err := o.Get(ctx, "/guards/acme")
	if err != nil || g.Revision != pendingRev {
		t.Fatalf("guard in the batch: %+v, %v", g, err)
	}
	if err := stage(store.CheckOp("/tenants/acme", tenantRev), store.PutOp("/guards/acme", []byte("{}"), g.Revision),
		store.PutOp("/workloads/acme/a", []byte("a2"), pendingRev), store.DeleteOp("/workloads/acme/old", oldRev)); err != nil {
		t.Fatal(err)
	}
	// A member with a stale precondition is refused and stages nothing.
	err = stage(store.PutOp("/workloads/acme/b", []byte("b"), store.Create), store.PutOp("/guards/acme", []byte("{}"), guardRev))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale guard: %v, want ErrConflict", err)
	}
	if err := stage(store.PutOp("/workloads/acme/a", []byte("again"), store.Create)); !errors.Is(err, store.ErrExists) {
		t.Fatalf("create of a key the batch made: %v, want ErrExists", err)
	}
	vals, _, err := o.List(ctx, "/workloads/acme")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, v := range vals {
		listed = append(listed, v.Key+"="+string(v.Data))
	}
	if diff := cmp.Diff([]string{"/workloads/acme/a=a2"}, listed); diff != "" {
		t.Errorf("list in the batch (-want +got):\n%s", diff)
	}
	want := []store.Op{
		store.PutOp("/guards/acme", []byte("{}"), guardRev),
		store.PutOp("/workloads/acme/a", []byte("a2"), store.Create),
		store.DeleteOp("/workloads/acme/old", oldRev),
		store.CheckOp("/tenants/acme", tenantRev),
	}
	if diff := cmp.Diff(want, o.ops()); diff != "" {
		t.Errorf("merged ops (-want +got):\n%s", diff)
	}
	if len(o.recs) != 2 {
		t.Errorf("%d records staged, want 2 (the refused members' none)", len(o.recs))
	}
	// The merged transaction applies to the store as it was.
	if _, err := st.Txn(ctx, o.ops()...); err != nil {
		t.Fatalf("merged txn: %v", err)
	}
	if _, err := o.Put(ctx, "/x", nil, store.Any); !errors.Is(err, errDirect) {
		t.Errorf("a direct write in a batch: %v", err)
	}
}

// countingStore counts the reads that reach the store.
type countingStore struct {
	store.Store
	gets, lists int
}

func (c *countingStore) Get(ctx context.Context, key string) (store.Value, error) {
	c.gets++
	return c.Store.Get(ctx, key)
}

func (c *countingStore) List(ctx context.Context, dir string) ([]store.Value, int64, error) {
	c.lists++
	return c.Store.List(ctx, dir)
}

// TestOverlayReadsOnce: a batch reads each key and directory from the
// store once (every member reads the same tenant, guard, topologies and
// policies); a change another process makes meanwhile is not seen by the
// batch but fails its commit, through the revisions the members check.
func TestOverlayReadsOnce(t *testing.T) {
	st, err := bolt.Open(t.TempDir(), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := t.Context()
	tenantRev, _ := st.Put(ctx, "/tenants/acme", []byte("t"), store.Any)
	if _, err := st.Put(ctx, "/topologies/site", []byte("s"), store.Any); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	o := newOverlay(cs)
	for range 3 {
		if v, err := o.Get(ctx, "/tenants/acme"); err != nil || v.Revision != tenantRev {
			t.Fatalf("get tenant: %+v, %v", v, err)
		}
		if _, err := o.Get(ctx, "/guards/acme"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("get missing guard: %v, want ErrNotFound", err)
		}
		if vals, _, err := o.List(ctx, "/topologies"); err != nil || len(vals) != 1 {
			t.Fatalf("list topologies: %v, %v", vals, err)
		}
	}
	if cs.gets != 2 || cs.lists != 1 {
		t.Errorf("store reads: %d gets, %d lists; want 2 and 1", cs.gets, cs.lists)
	}

	// Another process changes the tenant: the batch still sees the
	// revision it read, and its commit, which checks it, fails.
	if _, err := st.Put(ctx, "/tenants/acme", []byte("t2"), store.Any); err != nil {
		t.Fatal(err)
	}
	v, err := o.Get(ctx, "/tenants/acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := o.stage(ctx, audit.Record{Action: "apply"}, []store.Op{store.CheckOp(v.Key, v.Revision),
		store.PutOp("/guards/acme", []byte("{}"), store.Create), store.PutOp("/workloads/acme/a", []byte("a"), store.Create)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(ctx, o.ops()...); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("commit after another process changed what the batch read: %v, want ErrConflict", err)
	}
	if _, err := st.Get(ctx, "/workloads/acme/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused commit wrote: %v", err)
	}
}
