// Package storetest is the conformance suite for store.Store: one set of
// tests that every backend runs, so that the bbolt and etcd stores behave
// the same to everything built on them.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"rung.dev/rung/internal/store"
)

// NewStore returns a fresh, empty store for one test and arranges for it
// to be closed (t.Cleanup). It may be called from parallel tests.
type NewStore func(t *testing.T) store.Store

// eventTimeout bounds how long a test waits for a watch event that must
// come; it only keeps a broken backend from hanging the run.
const eventTimeout = 20 * time.Second

// Run runs the conformance suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CRUD", testCRUD},
		{"CompareAndSwap", testCAS},
		{"Revisions", testRevisions},
		{"List", testList},
		{"ListPage", testListPage},
		{"Watch", testWatch},
		{"WatchFromNow", testWatchFromNow},
		{"WatchCancel", testWatchCancel},
		{"Txn", testTxn},
		{"TxnInvalid", testTxnInvalid},
		{"HostileKeys", testHostileKeys},
		{"HostileValues", testHostileValues},
		{"Limits", testLimits},
		{"ConcurrentWriters", testConcurrent},
		{"Context", testContext},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func mustPut(t *testing.T, s store.Store, key, data string, expect int64) int64 {
	t.Helper()
	rev, err := s.Put(t.Context(), key, []byte(data), expect)
	if err != nil {
		t.Fatalf("Put(%q, %d): %v", key, expect, err)
	}
	if rev <= 0 {
		t.Fatalf("Put(%q) returned revision %d", key, rev)
	}
	return rev
}

func mustGet(t *testing.T, s store.Store, key string) store.Value {
	t.Helper()
	v, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func wantValue(t *testing.T, s store.Store, key, data string, rev int64) {
	t.Helper()
	v := mustGet(t, s, key)
	if v.Key != key || string(v.Data) != data || (rev != 0 && v.Revision != rev) {
		t.Fatalf("Get(%q) = {%q, %q, rev %d}, want {%q, %q, rev %d}", key, v.Key, v.Data, v.Revision, key, data, rev)
	}
}

func testCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	const k = "/tenants/acme/workloads/api"
	_, err := s.Get(ctx, k)
	wantErr(t, "Get missing", err, store.ErrNotFound)

	r1 := mustPut(t, s, k, "v1", store.Any)
	wantValue(t, s, k, "v1", r1)
	r2 := mustPut(t, s, k, "v2", store.Any)
	if r2 <= r1 {
		t.Fatalf("overwrite revision %d, not after %d", r2, r1)
	}
	wantValue(t, s, k, "v2", r2)

	// Returned data is the caller's: changing it changes nothing stored.
	v := mustGet(t, s, k)
	v.Data[0] = 'X'
	wantValue(t, s, k, "v2", r2)

	r3, err := s.Delete(ctx, k, store.Any)
	if err != nil || r3 <= r2 {
		t.Fatalf("Delete = %d, %v; want a revision after %d", r3, err, r2)
	}
	_, err = s.Get(ctx, k)
	wantErr(t, "Get deleted", err, store.ErrNotFound)
	_, err = s.Delete(ctx, k, store.Any)
	wantErr(t, "Delete missing", err, store.ErrNotFound)

	// Empty values are values.
	mustPut(t, s, k, "", store.Create)
	if v := mustGet(t, s, k); len(v.Data) != 0 {
		t.Fatalf("empty value read back as %q", v.Data)
	}
}

func testCAS(t *testing.T, s store.Store) {
	ctx := t.Context()
	const k = "/tenants/acme/workloads/db"
	r1 := mustPut(t, s, k, "v1", store.Create)
	_, err := s.Put(ctx, k, []byte("again"), store.Create)
	wantErr(t, "create existing", err, store.ErrExists)
	_, err = s.Put(ctx, k, []byte("wrong"), r1+1000)
	wantErr(t, "Put with a revision never seen", err, store.ErrConflict)
	r2 := mustPut(t, s, k, "v2", r1)
	_, err = s.Put(ctx, k, []byte("stale"), r1)
	wantErr(t, "Put with a stale revision", err, store.ErrConflict)
	_, err = s.Delete(ctx, k, r1)
	wantErr(t, "Delete with a stale revision", err, store.ErrConflict)
	wantValue(t, s, k, "v2", r2)

	if _, err := s.Delete(ctx, k, r2); err != nil {
		t.Fatalf("Delete at current revision: %v", err)
	}
	_, err = s.Put(ctx, k, []byte("gone"), r2)
	wantErr(t, "CAS Put on a deleted key", err, store.ErrConflict)
	_, err = s.Delete(ctx, k, r2)
	wantErr(t, "CAS Delete on a deleted key", err, store.ErrConflict)
	_, err = s.Get(ctx, k)
	wantErr(t, "Get after failed CAS on deleted key", err, store.ErrNotFound)

	_, err = s.Put(ctx, k, []byte("x"), -2)
	wantErr(t, "Put with precondition -2", err, store.ErrInvalid)
	_, err = s.Delete(ctx, k, store.Create)
	wantErr(t, "Delete with Create", err, store.ErrInvalid)

	// A create after a delete starts the key over.
	r3 := mustPut(t, s, k, "v3", store.Create)
	if r3 <= r2 {
		t.Fatalf("recreate revision %d, not after %d", r3, r2)
	}
}

func testRevisions(t *testing.T, s store.Store) {
	var last int64
	for i := range 10 {
		r := mustPut(t, s, fmt.Sprintf("/rev/k%d", i%3), "x", store.Any)
		if r <= last {
			t.Fatalf("write %d got revision %d, not after %d", i, r, last)
		}
		last = r
	}
	vals, rev, err := s.List(t.Context(), "/rev")
	if err != nil {
		t.Fatal(err)
	}
	if rev < last {
		t.Fatalf("List revision %d is before the last write %d", rev, last)
	}
	if len(vals) != 3 {
		t.Fatalf("List /rev: %d values, want 3", len(vals))
	}
}

func keys(vals []store.Value) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v.Key
	}
	return out
}

func testList(t *testing.T, s store.Store) {
	ctx := t.Context()
	all := []string{
		"/tenants/acme/workloads/b",
		"/tenants/acme/workloads/a",
		"/tenants/acme/workloads/a-1",
		"/tenants/acme/quota",
		"/tenants/acme2/workloads/a",
		"/tenants/acme-x/workloads/a",
		"/tenants/acme",
		"/tenants/ac",
		"/topology",
	}
	var last int64
	for _, k := range all {
		last = mustPut(t, s, k, "data:"+k, store.Any)
	}
	acme := []string{"/tenants/acme/quota", "/tenants/acme/workloads/a", "/tenants/acme/workloads/a-1", "/tenants/acme/workloads/b"}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"/tenants/acme", acme},
		{"/tenants/acme/", acme},
		{"/tenants/acme2", []string{"/tenants/acme2/workloads/a"}},
		{"/tenants/acme/workloads/a", nil},
		{"/nothing/here", nil},
		{"/", func() []string { a := slices.Clone(all); slices.Sort(a); return a }()},
	} {
		vals, rev, err := s.List(ctx, tc.dir)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.dir, err)
		}
		if got := keys(vals); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.dir, got, tc.want)
		}
		if rev < last {
			t.Errorf("List(%q) revision %d, before the last write %d", tc.dir, rev, last)
		}
		for _, v := range vals {
			if string(v.Data) != "data:"+v.Key || v.Revision <= 0 || v.Revision > rev {
				t.Errorf("List(%q): %q = %q at %d (list at %d)", tc.dir, v.Key, v.Data, v.Revision, rev)
			}
		}
	}
}

// testListPage: pages of a directory follow each other without gap or
// repeat, all at the first page's revision; a change elsewhere does not
// disturb them; a change below the directory either leaves the pages as
// of that revision (etcd keeps old revisions) or fails with ErrCompacted
// (the embedded store keeps none), never mixes the two states.
func testListPage(t *testing.T, s store.Store) {
	ctx := t.Context()
	var want []string
	for _, n := range []string{"e", "a", "c", "b", "d"} {
		mustPut(t, s, "/p/"+n, "v1", store.Any)
		want = append(want, "/p/"+n)
	}
	slices.Sort(want)
	mustPut(t, s, "/p2/x", "v1", store.Any)
	mustPut(t, s, "/p-x", "v1", store.Any)

	var got []string
	var rev int64
	after := ""
	for i := 0; ; i++ {
		pg, err := s.ListPage(ctx, "/p", after, 2, rev)
		if err != nil {
			t.Fatalf("page %d: %v", i, err)
		}
		if rev != 0 && pg.Revision != rev {
			t.Errorf("page %d at revision %d, the first at %d", i, pg.Revision, rev)
		}
		rev = pg.Revision
		if len(pg.Values) > 2 {
			t.Fatalf("page %d has %d values, limit 2", i, len(pg.Values))
		}
		got = append(got, keys(pg.Values)...)
		if i == 0 {
			mustPut(t, s, "/p2/y", "elsewhere", store.Any) // not below /p
		}
		if !pg.More {
			break
		}
		after = pg.Values[len(pg.Values)-1].Key
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages = %q, want %q", got, want)
	}

	// A change below the directory between pages.
	first, err := s.ListPage(ctx, "/p", "", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "/p/c", store.Any); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "/p/b2", "new", store.Any)
	next, err := s.ListPage(ctx, "/p", first.Values[1].Key, 10, first.Revision)
	switch {
	case errors.Is(err, store.ErrCompacted):
	case err != nil:
		t.Fatalf("page after a change: %v", err)
	default:
		if k := keys(next.Values); !slices.Equal(k, []string{"/p/c", "/p/d", "/p/e"}) {
			t.Errorf("page as of revision %d after a change = %q, want the old state", first.Revision, k)
		}
	}
	// Now: the current state.
	cur, err := s.ListPage(ctx, "/p", "", 10, 0)
	if err != nil || !slices.Equal(keys(cur.Values), []string{"/p/a", "/p/b", "/p/b2", "/p/d", "/p/e"}) || cur.More {
		t.Errorf("current page = %q (more %v), %v", keys(cur.Values), cur.More, err)
	}

	for _, bad := range []struct {
		dir, after string
		limit      int
		rev        int64
	}{
		{"/p", "", 0, 0}, {"/p", "/q/a", 1, 0}, {"/p", "", 1, -1}, {"../p", "", 1, 0},
	} {
		if _, err := s.ListPage(ctx, bad.dir, bad.after, bad.limit, bad.rev); !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("ListPage(%q, %q, %d, %d): %v, want invalid", bad.dir, bad.after, bad.limit, bad.rev, err)
		}
	}
}

// recv returns the next event on ch, failing the test if none comes.
func recv(t *testing.T, ch <-chan store.Event) store.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed, want an event")
		}
		if ev.Err != nil {
			t.Fatalf("watch ended: %v", ev.Err)
		}
		return ev
	case <-time.After(eventTimeout):
		t.Fatal("no watch event")
	}
	return store.Event{}
}

// drained waits for ch to close and returns the last event's error.
func drained(t *testing.T, ch <-chan store.Event) error {
	t.Helper()
	var err error
	deadline := time.After(eventTimeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return err
			}
			err = ev.Err
		case <-deadline:
			t.Fatal("watch channel not closed")
		}
	}
}

func wantEvent(t *testing.T, ev store.Event, typ store.EventType, key, data string, rev int64) {
	t.Helper()
	if ev.Type != typ || ev.Value.Key != key || string(ev.Value.Data) != data || ev.Value.Revision != rev {
		t.Fatalf("event %s %q %q @%d, want %s %q %q @%d", ev.Type, ev.Value.Key, ev.Value.Data, ev.Value.Revision, typ, key, data, rev)
	}
}

func testWatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, "/w/acme/a", "a0", store.Any)
	r1 := mustPut(t, s, "/w/acme/a", "a1", store.Any)
	mustPut(t, s, "/w/acme2/a", "other tenant", store.Any)
	r2 := mustPut(t, s, "/w/acme/b", "b1", store.Any)
	r3, err := s.Delete(ctx, "/w/acme/a", store.Any)
	if err != nil {
		t.Fatal(err)
	}

	ch, err := s.Watch(ctx, "/w/acme", r1)
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, recv(t, ch), store.EventPut, "/w/acme/a", "a1", r1)
	wantEvent(t, recv(t, ch), store.EventPut, "/w/acme/b", "b1", r2)
	wantEvent(t, recv(t, ch), store.EventDelete, "/w/acme/a", "", r3)

	// Live changes follow history, without the other tenant's.
	mustPut(t, s, "/w/acme2/b", "other tenant", store.Any)
	r4 := mustPut(t, s, "/w/acme/c", "c1", store.Any)
	wantEvent(t, recv(t, ch), store.EventPut, "/w/acme/c", "c1", r4)

	// One Txn: one revision, every change.
	r5, err := s.Txn(ctx, store.PutOp("/w/acme/d", []byte("d1"), store.Create), store.DeleteOp("/w/acme/c", r4), store.PutOp("/w/acme2/c", nil, store.Any))
	if err != nil {
		t.Fatal(err)
	}
	got := []store.Event{recv(t, ch), recv(t, ch)}
	slices.SortFunc(got, func(a, b store.Event) int { return strings.Compare(a.Value.Key, b.Value.Key) })
	wantEvent(t, got[0], store.EventDelete, "/w/acme/c", "", r5)
	wantEvent(t, got[1], store.EventPut, "/w/acme/d", "d1", r5)

	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %s %q @%d (err %v)", ev.Type, ev.Value.Key, ev.Value.Revision, ev.Err)
	default:
	}
}

func testWatchFromNow(t *testing.T, s store.Store) {
	mustPut(t, s, "/now/a", "old", store.Any)
	ch, err := s.Watch(t.Context(), "/now", 0)
	if err != nil {
		t.Fatal(err)
	}
	r := mustPut(t, s, "/now/b", "new", store.Any)
	wantEvent(t, recv(t, ch), store.EventPut, "/now/b", "new", r)

	// List, then watch from the list's revision + 1: nothing lost, nothing twice.
	vals, rev, err := s.List(t.Context(), "/now")
	if err != nil || len(vals) != 2 {
		t.Fatalf("List = %d values, %v", len(vals), err)
	}
	r2 := mustPut(t, s, "/now/c", "after list", store.Any)
	ch2, err := s.Watch(t.Context(), "/now", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	wantEvent(t, recv(t, ch2), store.EventPut, "/now/c", "after list", r2)
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.Watch(ctx, "/cancel", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := drained(t, ch); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled watch ended with %v", err)
	}
	_, err = s.Watch(t.Context(), "/bad//dir", 0)
	wantErr(t, "Watch invalid dir", err, store.ErrInvalidKey)
	_, err = s.Watch(t.Context(), "/cancel", -1)
	wantErr(t, "Watch from -1", err, store.ErrInvalid)
}

func testTxn(t *testing.T, s store.Store) {
	ctx := t.Context()
	rt := mustPut(t, s, "/tenants/acme", "tenant", store.Any)
	ra := mustPut(t, s, "/tenants/acme/workloads/a", "a0", store.Any)

	// One failing precondition: nothing applies, and the error names it.
	_, err := s.Txn(ctx,
		store.PutOp("/tenants/acme/workloads/a", []byte("a1"), ra),
		store.PutOp("/tenants/acme/workloads/b", []byte("b1"), store.Create),
		store.DeleteOp("/tenants/acme/workloads/missing", store.Any))
	wantErr(t, "Txn deleting a missing key", err, store.ErrNotFound)
	if !strings.Contains(err.Error(), "/tenants/acme/workloads/missing") {
		t.Errorf("error %q does not name the failing key", err)
	}
	wantValue(t, s, "/tenants/acme/workloads/a", "a0", ra)
	_, err = s.Get(ctx, "/tenants/acme/workloads/b")
	wantErr(t, "Get of a key from a failed Txn", err, store.ErrNotFound)

	for _, tc := range []struct {
		name string
		op   store.Op
		want error
	}{
		{"stale put", store.PutOp("/tenants/acme/workloads/a", []byte("x"), ra+1000), store.ErrConflict},
		{"create existing", store.PutOp("/tenants/acme/workloads/a", []byte("x"), store.Create), store.ErrExists},
		{"check stale", store.CheckOp("/tenants/acme", rt+1000), store.ErrConflict},
		{"check absent", store.CheckOp("/tenants/acme", store.Create), store.ErrExists},
		{"check missing", store.CheckOp("/tenants/nobody", 1), store.ErrConflict},
	} {
		_, err := s.Txn(ctx, store.PutOp("/tenants/acme/workloads/c", []byte("c"), store.Any), tc.op)
		wantErr(t, "Txn with "+tc.name, err, tc.want)
		_, err = s.Get(ctx, "/tenants/acme/workloads/c")
		wantErr(t, "Get after Txn with "+tc.name, err, store.ErrNotFound)
	}

	// All preconditions hold: everything applies at one revision.
	rev, err := s.Txn(ctx,
		store.CheckOp("/tenants/acme", rt),
		store.PutOp("/tenants/acme/workloads/a", []byte("a1"), ra),
		store.PutOp("/tenants/acme/workloads/b", []byte("b1"), store.Create),
		store.PutOp("/audit/log/1", []byte("entry"), store.Create))
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	wantValue(t, s, "/tenants/acme/workloads/a", "a1", rev)
	wantValue(t, s, "/tenants/acme/workloads/b", "b1", rev)
	wantValue(t, s, "/audit/log/1", "entry", rev)
	wantValue(t, s, "/tenants/acme", "tenant", rt)

	rev2, err := s.Txn(ctx, store.DeleteOp("/tenants/acme/workloads/a", rev), store.DeleteOp("/tenants/acme/workloads/b", store.Any))
	if err != nil || rev2 <= rev {
		t.Fatalf("Txn deleting two keys = %d, %v", rev2, err)
	}
	vals, _, err := s.List(ctx, "/tenants/acme")
	if err != nil || len(vals) != 0 {
		t.Fatalf("List after deleting everything = %q, %v", keys(vals), err)
	}

	// Checks alone change nothing.
	if _, err := s.Txn(ctx, store.CheckOp("/tenants/acme", rt)); err != nil {
		t.Fatalf("check-only Txn: %v", err)
	}
	wantValue(t, s, "/tenants/acme", "tenant", rt)
}

func testTxnInvalid(t *testing.T, s store.Store) {
	ctx := t.Context()
	many := make([]store.Op, store.MaxTxnOps+1)
	for i := range many {
		many[i] = store.PutOp(fmt.Sprintf("/many/k%03d", i), []byte("x"), store.Any)
	}
	for _, tc := range []struct {
		name string
		ops  []store.Op
		want error
	}{
		{"empty", nil, store.ErrInvalid},
		{"duplicate key", []store.Op{store.PutOp("/d/a", nil, store.Any), store.DeleteOp("/d/a", store.Any)}, store.ErrInvalid},
		{"check any", []store.Op{store.CheckOp("/d/a", store.Any)}, store.ErrInvalid},
		{"unknown kind", []store.Op{{Kind: 99, Key: "/d/a"}}, store.ErrInvalid},
		{"bad key", []store.Op{store.PutOp("/d/a", nil, store.Any), store.PutOp("/d/../a", nil, store.Any)}, store.ErrInvalidKey},
		{"too many", many, store.ErrTooLarge},
	} {
		_, err := s.Txn(ctx, tc.ops...)
		wantErr(t, "Txn "+tc.name, err, tc.want)
	}
	vals, _, err := s.List(ctx, "/")
	if err != nil || len(vals) != 0 {
		t.Fatalf("invalid Txns wrote %q (%v)", keys(vals), err)
	}
	// The most operations allowed is fine.
	if _, err := s.Txn(ctx, many[:store.MaxTxnOps]...); err != nil {
		t.Fatalf("Txn of %d ops: %v", store.MaxTxnOps, err)
	}
}

// hostileKeys are keys every call must refuse with ErrInvalidKey.
func hostileKeys() []string {
	return []string{
		"", "a", "/", "//", "/a/", "//a", "/a//b", "a/b",
		"/a/../b", "/..", "/a/..", "/a/./b", "/.",
		"/a b", "/a\tb", "/a\nb", "/a\x00b", "/a\x7fb", "/a\\b", "/a%2fb", "/a?b", "/a#b", "/a*", "/a\"b", "/a'b",
		"/caf\u00e9", "/\xff\xfe", "/a/\u202eb", "/ａ",
		"/" + strings.Repeat("k", store.MaxKeySize),
		strings.Repeat("/k", store.MaxKeyDepth+1),
	}
}

func testHostileKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, k := range hostileKeys() {
		_, err := s.Get(ctx, k)
		wantErr(t, fmt.Sprintf("Get(%q)", k), err, store.ErrInvalidKey)
		_, err = s.Put(ctx, k, []byte("x"), store.Any)
		wantErr(t, fmt.Sprintf("Put(%q)", k), err, store.ErrInvalidKey)
		_, err = s.Delete(ctx, k, store.Any)
		wantErr(t, fmt.Sprintf("Delete(%q)", k), err, store.ErrInvalidKey)
		_, err = s.Txn(ctx, store.PutOp("/ok", nil, store.Any), store.PutOp(k, nil, store.Any))
		wantErr(t, fmt.Sprintf("Txn(%q)", k), err, store.ErrInvalidKey)
		if k == "/" || k == "/a/" {
			continue // valid directories
		}
		_, _, err = s.List(ctx, k)
		wantErr(t, fmt.Sprintf("List(%q)", k), err, store.ErrInvalidKey)
		_, err = s.Watch(ctx, k, 0)
		wantErr(t, fmt.Sprintf("Watch(%q)", k), err, store.ErrInvalidKey)
	}
	vals, _, err := s.List(ctx, "/")
	if err != nil || len(vals) != 0 {
		t.Fatalf("hostile keys wrote %q (%v)", keys(vals), err)
	}
	// The edges of what is allowed.
	for _, k := range []string{
		"/a", "/A.b_c-d~e:f@g=h+i/0", "/...", "/a/.b/c.",
		"/" + strings.Repeat("k", store.MaxKeySize-1),
		strings.Repeat("/k", store.MaxKeyDepth),
	} {
		mustPut(t, s, k, "ok", store.Any)
		wantValue(t, s, k, "ok", 0)
	}
}

func testHostileValues(t *testing.T, s store.Store) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for i, data := range [][]byte{
		all,
		[]byte("\x00\x00\x00"),
		[]byte("\xff\xfe not utf-8 \xc3\x28"),
		[]byte(`{"apiVersion":"rung.dev/v1","kind":"Tenant"}` + "\n\x00--\r\n"),
		bytes.Repeat([]byte{0}, 4096),
	} {
		k := fmt.Sprintf("/values/v%d", i)
		rev, err := s.Put(t.Context(), k, data, store.Any)
		if err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		v := mustGet(t, s, k)
		if !bytes.Equal(v.Data, data) || v.Revision != rev {
			t.Fatalf("value %d did not round-trip", i)
		}
	}
}

func testLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	big := bytes.Repeat([]byte("v"), store.MaxValueSize)
	if _, err := s.Put(ctx, "/big/max", big, store.Any); err != nil {
		t.Fatalf("Put of MaxValueSize: %v", err)
	}
	if v := mustGet(t, s, "/big/max"); !bytes.Equal(v.Data, big) {
		t.Fatal("MaxValueSize value did not round-trip")
	}
	_, err := s.Put(ctx, "/big/over", append(big, 'x'), store.Any)
	wantErr(t, "Put over MaxValueSize", err, store.ErrTooLarge)
	half := big[:store.MaxTxnSize/2+1]
	_, err = s.Txn(ctx, store.PutOp("/big/h1", half, store.Any), store.PutOp("/big/h2", half, store.Any))
	wantErr(t, "Txn over MaxTxnSize", err, store.ErrTooLarge)
	vals, _, err := s.List(ctx, "/big")
	if err != nil || !slices.Equal(keys(vals), []string{"/big/max"}) {
		t.Fatalf("List after refused writes = %q, %v", keys(vals), err)
	}
	// A maximal value and a small companion fit one Txn.
	if _, err := s.Txn(ctx, store.PutOp("/big/max", big, store.Any), store.PutOp("/big/audit", make([]byte, 4096), store.Create)); err != nil {
		t.Fatalf("Txn of MaxValueSize + 4 KiB: %v", err)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	const (
		writers = 6
		incs    = 15
	)
	ctx := t.Context()
	mustPut(t, s, "/counter", "0", store.Create)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range incs {
				if _, err := s.Put(ctx, fmt.Sprintf("/own/w%d/k%02d", w, i), []byte("x"), store.Create); err != nil {
					errs <- err
					return
				}
				for attempt := 0; ; attempt++ {
					if attempt > 1000 {
						errs <- fmt.Errorf("writer %d: no progress", w)
						return
					}
					v, err := s.Get(ctx, "/counter")
					if err != nil {
						errs <- err
						return
					}
					var n int
					fmt.Sscan(string(v.Data), &n)
					_, err = s.Put(ctx, "/counter", fmt.Appendf(nil, "%d", n+1), v.Revision)
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantValue(t, s, "/counter", fmt.Sprint(writers*incs), 0)
	vals, _, err := s.List(ctx, "/own")
	if err != nil || len(vals) != writers*incs {
		t.Fatalf("List /own: %d values, %v; want %d", len(vals), err, writers*incs)
	}
}

func testContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Get(ctx, "/ctx/a")
	wantErr(t, "Get with a cancelled context", err, context.Canceled)
	_, err = s.Put(ctx, "/ctx/a", nil, store.Any)
	wantErr(t, "Put with a cancelled context", err, context.Canceled)
	_, _, err = s.List(ctx, "/ctx")
	wantErr(t, "List with a cancelled context", err, context.Canceled)
	_, err = s.Txn(ctx, store.PutOp("/ctx/a", nil, store.Any))
	wantErr(t, "Txn with a cancelled context", err, context.Canceled)
	if _, err := s.Get(t.Context(), "/ctx/a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a write with a cancelled context happened: Get = %v", err)
	}
}

func testClose(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(t, s, "/close/a", "a", store.Any)
	ch, err := s.Watch(ctx, "/close", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := drained(t, ch); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Fatalf("watch ended with %v, want ErrClosed or a plain close", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = s.Get(ctx, "/close/a")
	wantErr(t, "Get after Close", err, store.ErrClosed)
	_, err = s.Put(ctx, "/close/a", nil, store.Any)
	wantErr(t, "Put after Close", err, store.ErrClosed)
	_, err = s.Delete(ctx, "/close/a", store.Any)
	wantErr(t, "Delete after Close", err, store.ErrClosed)
	_, err = s.Txn(ctx, store.PutOp("/close/a", nil, store.Any))
	wantErr(t, "Txn after Close", err, store.ErrClosed)
	_, _, err = s.List(ctx, "/close")
	wantErr(t, "List after Close", err, store.ErrClosed)
	_, err = s.Watch(ctx, "/close", 0)
	wantErr(t, "Watch after Close", err, store.ErrClosed)
}
