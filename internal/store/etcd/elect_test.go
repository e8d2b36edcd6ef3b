package etcd_test

import (
	"context"
	"errors"
	"path"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/store"
	"rung.dev/rung/internal/store/etcd/etcdtest"
)

// TestElection: two campaigners on one real etcd; one leads and its fenced
// writes apply; the other waits. When the leader's lease ends (revoked, as
// at its expiry after a crash or a partition), its term's Done closes, the
// other leads with a higher term, and the deposed leader's fenced write is
// refused by the store: it can no longer write a plan.
func TestElection(t *testing.T) {
	c := etcdtest.Start(t, 1)
	st := open(t, c.Endpoints(), "/elect")
	a, b := st.Elector("a", 5*time.Second), st.Elector("b", 5*time.Second)
	t.Cleanup(func() { a.Close(); b.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	ta, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := b.Leader(ctx); err != nil || info.ID != "a" || info.Term != ta.Term {
		t.Fatalf("Leader = %+v, %v; want a at %d", info, err, ta.Term)
	}
	fenced := func(term *leader.Term, val string) error {
		_, err := st.Txn(ctx, append(term.Fence(), store.PutOp("/placements/t/w", []byte(val), store.Any))...)
		return err
	}
	if err := fenced(ta, "by a"); err != nil {
		t.Fatalf("the leader's fenced write: %v", err)
	}

	won := make(chan *leader.Term, 1)
	go func() {
		tb, err := b.Campaign(ctx)
		if err != nil {
			t.Error(err)
		}
		won <- tb
	}()
	select {
	case <-won:
		t.Fatal("b leads while a holds its term")
	case <-time.After(time.Second):
	}

	// a's lease ends.
	lease, err := strconv.ParseInt(path.Base(ta.Key), 16, 64)
	if err != nil {
		t.Fatalf("leader key %q: %v", ta.Key, err)
	}
	if _, err := st.Client().Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	var tb *leader.Term
	select {
	case tb = <-won:
	case <-ctx.Done():
		t.Fatal("b never led after a's lease ended")
	}
	if tb == nil || tb.Term <= ta.Term {
		t.Fatalf("b's term %+v, want after a's %d", tb, ta.Term)
	}
	select {
	case <-ta.Done():
	case <-ctx.Done():
		t.Fatal("a's term did not end with its lease")
	}
	if err := fenced(ta, "by a, deposed"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the deposed leader's fenced write: %v, want ErrConflict", err)
	}
	if err := fenced(tb, "by b"); err != nil {
		t.Fatalf("the new leader's fenced write: %v", err)
	}
	if v, err := st.Get(ctx, "/placements/t/w"); err != nil || string(v.Data) != "by b" {
		t.Fatalf("stored %q, %v; want by b", v.Data, err)
	}
	if info, err := a.Leader(ctx); err != nil || info.ID != "b" {
		t.Fatalf("Leader = %+v, %v; want b", info, err)
	}
	// Resign hands over at once.
	if err := tb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if info, err := a.Leader(ctx); err != nil || info.ID != "" {
		t.Fatalf("Leader after resign = %+v, %v; want none", info, err)
	}
}
