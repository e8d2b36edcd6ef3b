package server

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/server/wire"
	"rung.dev/rung/internal/store"
)

// TestEncodeList: a list page copied from the store reads back as the
// same wire.List that encoding/json would have written.
func TestEncodeList(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   wire.List
	}{
		{"empty", wire.List{Items: []wire.Item{}, Revision: 7}},
		{"items", wire.List{Revision: 12, Items: []wire.Item{
			{Revision: 3, Object: json.RawMessage(`{"kind":"Workload","metadata":{"name":"a","labels":{"x":"<b>\"q\""}}}`)},
			{Revision: 11, Object: json.RawMessage(`{"kind":"Workload","metadata":{"name":"b"}}`)},
		}}},
		{"continue", wire.List{Revision: 5, Continue: `eyJhIjoiYiIsInIiOjV9`, Items: []wire.Item{
			{Revision: 5, Object: json.RawMessage(`{"a":[1,2,{"b":null}]}`)},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := encodeList(tc.in)
			if !json.Valid(body) {
				t.Fatalf("not JSON: %s", body)
			}
			var got wire.List
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			// writeJSON's form of the same list, read back.
			var std bytes.Buffer
			enc := json.NewEncoder(&std)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(tc.in); err != nil {
				t.Fatal(err)
			}
			var want wire.List
			if err := json.Unmarshal(std.Bytes(), &want); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("encodeList read back (-encoding/json +encodeList):\n%s", diff)
			}
		})
	}
}

// TestListGate: no more lists than the gate's slots run at once; a
// waiting list gives up when its request ends, and goes in once a slot
// is free.
func TestListGate(t *testing.T) {
	var writing atomic.Int64
	g := newListGate(1, &writing)
	release, err := g.enter(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.enter(ctx); err == nil {
		t.Fatal("a second list entered a gate of one slot")
	}
	entered := make(chan func(), 1)
	go func() {
		r, err := g.enter(t.Context())
		if err == nil {
			entered <- r
		}
	}()
	release()
	select {
	case r := <-entered:
		r()
	case <-time.After(60 * time.Second):
		t.Fatal("a waiting list did not enter after the slot was released")
	}
}

// TestListGateYields: while writes are in flight, a list's slot stays
// closed listYield times as long as the list took; with none, it opens at
// once.
func TestListGateYields(t *testing.T) {
	var writing atomic.Int64
	g := newListGate(1, &writing)
	var held []time.Duration
	var pending []func()
	g.after = func(d time.Duration, f func()) { held, pending = append(held, d), append(pending, f) }

	release, err := g.enter(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	release() // no write in flight: open at once
	if len(held) != 0 || len(g.slots) != 0 {
		t.Fatalf("slot held %v with no write in flight (%d taken)", held, len(g.slots))
	}

	writing.Add(1)
	release, err = g.enter(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the list takes at least this long
	release()
	if len(held) != 1 || held[0] < listYield*10*time.Millisecond || len(g.slots) != 1 {
		t.Fatalf("with a write in flight: held %v, want one hold of at least %v; %d slots taken", held, listYield*10*time.Millisecond, len(g.slots))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := g.enter(ctx); err == nil {
		t.Fatal("a list entered while the slot was held for writers")
	}
	pending[0]() // the hold ends
	if release, err = g.enter(t.Context()); err != nil {
		t.Fatal(err)
	}
	writing.Add(-1)
	release()
}

// TestNextGap: the planner loop waits planGap times the last plan's
// time between plans, within [debounce, maxPlanGap].
func TestNextGap(t *testing.T) {
	for _, tc := range []struct {
		took, want time.Duration
	}{
		{0, debounce},
		{time.Millisecond, debounce},
		{20 * time.Millisecond, planGap * 20 * time.Millisecond},
		{time.Second, maxPlanGap},
	} {
		if got := nextGap(tc.took); got != tc.want {
			t.Errorf("nextGap(%v) = %v, want %v", tc.took, got, tc.want)
		}
	}
}

// TestSnapshotPages: a snapshot's pages are, byte for byte, what
// encodeList writes for the same items, with continue tokens chaining
// them; a page's charge is its share of the snapshot's read.
func TestSnapshotPages(t *testing.T) {
	vals := []store.Value{
		{Key: "/w/t/a", Revision: 3, Data: []byte(`{"a":1}`)},
		{Key: "/w/t/b", Revision: 5, Data: []byte(`{"b":[2]}`)},
		{Key: "/w/t/c", Revision: 4, Data: []byte(`{"c":"x"}`)},
	}
	read := func(context.Context, string, int) (store.Page, time.Duration, error) {
		return store.Page{Values: vals, Revision: 9}, 300 * time.Millisecond, nil
	}
	c := newListCache(nil, time.Now, read)
	sn, large, err := c.build(t.Context(), "/w/t")
	if err != nil || large {
		t.Fatal(err, large)
	}
	for _, tc := range []struct {
		name, after string
		limit       int
		want        []store.Value
		more        bool
	}{
		{"all", "", 10, vals, false},
		{"first", "", 2, vals[:2], true},
		{"after a", "/w/t/a", 2, vals[1:], false},
		{"after a key not listed", "/w/t/bb", 2, vals[2:], false},
		{"past the end", "/w/t/c", 2, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb := sn.page(tc.after, tc.limit)
			l := wire.List{Items: []wire.Item{}, Revision: 9}
			for _, v := range tc.want {
				l.Items = append(l.Items, wire.Item{Revision: v.Revision, Object: v.Data})
			}
			if tc.more {
				l.Continue = nextBelow("/w/t", tc.want[len(tc.want)-1].Key, 9)
			}
			if diff := cmp.Diff(string(encodeList(l)), string(pb.bytes())); diff != "" {
				t.Errorf("page (-encodeList +snapshot):\n%s", diff)
			}
			if want := sn.cost * time.Duration(len(tc.want)) / 3; pb.cost != want {
				t.Errorf("charge %v, want %v", pb.cost, want)
			}
		})
	}
	if sn.cost < 300*time.Millisecond {
		t.Errorf("snapshot cost %v, less than its read", sn.cost)
	}
}

// TestListGateCharges: a page sent from a snapshot is charged its share of
// the snapshot's read while writes are in flight, also when its reader is
// slow and the slot is let go before the page is sent; release after that
// changes nothing.
func TestListGateCharges(t *testing.T) {
	var writing atomic.Int64
	writing.Add(1)
	g := newListGate(1, &writing)
	var (
		mu      sync.Mutex
		held    []time.Duration
		pending []func()
	)
	g.after = func(d time.Duration, f func()) {
		mu.Lock()
		defer mu.Unlock()
		held, pending = append(held, d), append(pending, f)
	}
	const charge = 5 * time.Second
	release, err := g.enterFor(t.Context(), time.Hour, charge)
	if err != nil {
		t.Fatal(err)
	}
	release()
	mu.Lock()
	if len(held) != 1 || held[0] < listYield*charge {
		t.Fatalf("sent at once: held %v, want one hold of at least %v", held, listYield*charge)
	}
	pending[0]()
	mu.Unlock()

	// A slow reader: the slot goes after 1 ms, charged all the same.
	release, err = g.enterFor(t.Context(), time.Millisecond, charge)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := len(held)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a slow reader was never let go")
		}
	}
	release()
	mu.Lock()
	defer mu.Unlock()
	if len(held) != 2 || held[1] < listYield*charge {
		t.Fatalf("slow reader: held %v, want a second hold of at least %v and no third", held, listYield*charge)
	}
}

// changedAlways is a store.ChangeTracker whose directories changed just now.
type changedAlways struct{ rev *atomic.Int64 }

func (c changedAlways) LastChange(string) int64 { return c.rev.Load() }

// TestListCacheHoldsLittle: a directory that changes before every list
// gets a snapshot per list; those no page named are let go (memory
// included) as soon as the next replaces them, and the ones pages named
// are kept within their bounds.
func TestListCacheHoldsLittle(t *testing.T) {
	var rev atomic.Int64
	data := bytes.Repeat([]byte("x"), 1000)
	read := func(context.Context, string, int) (store.Page, time.Duration, error) {
		r := rev.Add(1)
		vals := []store.Value{{Key: "/w/t/a", Revision: r, Data: data}, {Key: "/w/t/b", Revision: r, Data: data}}
		return store.Page{Values: vals, Revision: r}, time.Millisecond, nil
	}
	c := newListCache(changedAlways{&rev}, time.Now, read)
	for i := range 1000 {
		rev.Add(1) // a write below the directory
		sn, err := c.current(t.Context(), "/w/t")
		if err != nil || sn == nil || sn.rev != rev.Load() {
			t.Fatalf("list %d: %v, a snapshot older than the last write", i, err)
		}
		if i%100 == 0 {
			sn.page("", 1) // a page with a continue token: kept
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	size := 0
	for _, sn := range c.held {
		if !sn.dropped {
			size += sn.size()
		}
	}
	if len(c.held) > 2*c.live+16 || c.live > 11 || size != c.bytes {
		t.Errorf("after 1000 snapshots (10 paged): %d held, %d live, %d bytes counted, %d live bytes", len(c.held), c.live, c.bytes, size)
	}
}
