package bolt

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/store"
)

// TestLastChange: every returned write moves LastChange of each directory
// above its keys to its revision, and only those; checks and refused
// writes move nothing.
func TestLastChange(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	dirs := []string{"/", "/w", "/w/a", "/w/a/", "/w/b", "/x"}
	last := func() map[string]int64 {
		m := map[string]int64{}
		for _, d := range dirs {
			m[d] = s.LastChange(d)
		}
		return m
	}
	if diff := cmp.Diff(map[string]int64{"/": 0, "/w": 0, "/w/a": 0, "/w/a/": 0, "/w/b": 0, "/x": 0}, last()); diff != "" {
		t.Errorf("fresh store (-want +got):\n%s", diff)
	}
	r1, err := s.Put(ctx, "/w/a/one", []byte("1"), store.Create)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Txn(ctx, store.PutOp("/w/b/two", []byte("2"), store.Create), store.CheckOp("/w/a/one", r1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "/x/three", []byte("3"), r2); err == nil { // refused: absent
		t.Fatal("conflicting put succeeded")
	}
	if _, err := s.Txn(ctx, store.CheckOp("/w/b/two", r2)); err != nil { // only a check
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int64{"/": r2, "/w": r2, "/w/a": r1, "/w/a/": r1, "/w/b": r2, "/x": 0}, last()); diff != "" {
		t.Errorf("after writes (-want +got):\n%s", diff)
	}
	r3, err := s.Delete(ctx, "/w/a/one", r1)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.LastChange("/w/a"); got != r3 {
		t.Errorf("after delete: LastChange(/w/a) = %d, want %d", got, r3)
	}
	if got := s.LastChange("bad dir"); got < r3 {
		t.Errorf("LastChange of an invalid dir = %d: want never current", got)
	}
}

// TestChangesForget: past maxTracked directories everything counts as
// changed at the latest revision recorded, even when records come out of
// order; never earlier than a real change.
func TestChangesForget(t *testing.T) {
	var c changes
	c.record(7, []store.Op{store.PutOp("/a/k", nil, 0)})
	for i := range maxTracked - 2 { // with /, /a/ and /d/: one past the bound
		c.record(5, []store.Op{store.PutOp(fmt.Sprintf("/d/%d/k", i), nil, 0)})
	}
	if c.last["/a/"] != 7 || c.floor != 0 {
		t.Fatalf("before the bound: /a/ at %d, floor %d", c.last["/a/"], c.floor)
	}
	c.record(6, []store.Op{store.PutOp("/e/k", nil, 0)})
	if len(c.last) != 2 || c.floor != 7 { // / and /e/
		t.Errorf("past the bound: %d tracked, floor %d; want a fresh map and floor 7 (the latest recorded)", len(c.last), c.floor)
	}
}
