package leader_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/leader"
	"rung.dev/rung/internal/store"
)

// TestFence: a term with a key fences writes with a check of that key at
// the term's revision; a Solo term (the embedded store) needs none, and
// never ends.
func TestFence(t *testing.T) {
	resigned := 0
	term := leader.NewTerm(leader.Info{ID: "a", Term: 42}, "/leader/694d", make(chan struct{}), func(context.Context) error { resigned++; return nil })
	if diff := cmp.Diff([]store.Op{store.CheckOp("/leader/694d", 42)}, term.Fence()); diff != "" {
		t.Errorf("fence (-want +got):\n%s", diff)
	}
	_ = term.Resign(t.Context())
	_ = term.Resign(t.Context())
	if resigned != 1 {
		t.Errorf("resigned %d times, want once", resigned)
	}
	solo, err := leader.Solo{ID: "me"}.Campaign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if f := solo.Fence(); f != nil || solo.Done() != nil || solo.ID != "me" {
		t.Errorf("solo term: fence %v, done %v, id %q", f, solo.Done(), solo.ID)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := (leader.Solo{}).Campaign(ctx); err == nil {
		t.Error("campaign with a cancelled context succeeded")
	}
}
