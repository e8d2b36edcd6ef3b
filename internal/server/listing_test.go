package server

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/server/wire"
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
	g := make(listGate, 1)
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
