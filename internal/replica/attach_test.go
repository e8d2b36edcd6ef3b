package replica

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recorder is a fake Attacher that logs its calls, failing Attach when
// fail is set.
type recorder struct {
	name string
	fail bool
	log  *[]string
}

func (r recorder) Name() string { return r.name }
func (r recorder) Attach(_ context.Context, a *Attachment) error {
	*r.log = append(*r.log, "attach "+r.name)
	if r.fail {
		return errors.New("no room")
	}
	return nil
}
func (r recorder) Detach(_ context.Context, id string, _ *Spec) error {
	*r.log = append(*r.log, "detach "+r.name)
	return nil
}

func TestAttachUndoesOnFailure(t *testing.T) {
	tests := []struct {
		name    string
		failAt  int // -1: none fails
		want    []string
		wantErr bool
	}{
		{"all attach", -1, []string{"attach a", "attach b", "attach c"}, false},
		{"first fails", 0, []string{"attach a"}, true},
		{"last fails, the others are undone last first", 2, []string{"attach a", "attach b", "attach c", "detach b", "detach a"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			n := &Node{log: slog.New(slog.DiscardHandler)}
			for i, name := range []string{"a", "b", "c"} {
				n.attachers = append(n.attachers, recorder{name: name, fail: i == tt.failAt, log: &log})
			}
			err := n.attach(context.Background(), &Attachment{Spec: Spec{ID: "r1"}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("attach: %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrAttach) {
				t.Errorf("attach error %v does not wrap ErrAttach", err)
			}
			if diff := cmp.Diff(tt.want, log); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
	var log []string
	n := &Node{attachers: []Attacher{recorder{name: "a", log: &log}, recorder{name: "b", log: &log}}}
	if err := n.detach(context.Background(), "r1", nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"detach b", "detach a"}, log); diff != "" {
		t.Errorf("detach order (-want +got):\n%s", diff)
	}
}
