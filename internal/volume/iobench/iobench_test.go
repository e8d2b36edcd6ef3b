package iobench_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"rung.dev/rung/internal/volume/iobench"
)

func TestSummarize(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []float64
		want iobench.Summary
	}{
		{"none", nil, iobench.Summary{}},
		{"one", []float64{3}, iobench.Summary{Median: 3, Q1: 3, Q3: 3, Min: 3, Max: 3}},
		{"odd, unsorted", []float64{5, 1, 3}, iobench.Summary{Median: 3, Q1: 2, Q3: 4, Min: 1, Max: 5}},
		{"even: between the middle two", []float64{4, 1, 2, 10}, iobench.Summary{Median: 3, Q1: 1.75, Q3: 5.5, Min: 1, Max: 10}},
		{"five", []float64{50, 10, 40, 20, 30}, iobench.Summary{Median: 30, Q1: 20, Q3: 40, Min: 10, Max: 50}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, iobench.Summarize(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestCompare: the ratio is taken round by round (each replica run
// against the host run next to it), not as a ratio of medians.
func TestCompare(t *testing.T) {
	res := func(x float64) iobench.Result {
		return iobench.Result{SeqWriteMBps: x, SeqReadMBps: x, RandWriteOps: x, RandReadOps: x}
	}
	// The machine slows down by half through the run; the replica is
	// always at 0.9 of the host next to it.
	rounds := []iobench.Round{
		{Host: res(100), Replica: res(90), HostFirst: true},
		{Host: res(50), Replica: res(45)},
		{Host: res(200), Replica: res(180), HostFirst: true},
	}
	host, replica, ratio := iobench.Compare(rounds)
	if diff := cmp.Diff(iobench.Summary{Median: 100, Q1: 75, Q3: 150, Min: 50, Max: 200}, host[0]); diff != "" {
		t.Errorf("host (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(iobench.Summary{Median: 90, Q1: 67.5, Q3: 135, Min: 45, Max: 180}, replica[3]); diff != "" {
		t.Errorf("replica (-want +got):\n%s", diff)
	}
	for i, r := range ratio {
		if r.Spread() > 1e-9 || r.Median < 0.9-1e-9 || r.Median > 0.9+1e-9 {
			t.Errorf("ratio of %s: %v, want exactly 0.90 every round", iobench.Jobs[i], r)
		}
	}
	for _, tt := range []struct {
		s    iobench.Summary
		want string
	}{
		{iobench.Summary{Median: 0.95, Q1: 0.91, Min: 0.5, Max: 1}, "met"},
		{iobench.Summary{Median: 0.95, Q1: 0.8, Min: 0.7, Max: 1}, "met on the median"},
		{iobench.Summary{Median: 0.85, Q1: 0.8, Min: 0.7, Max: 0.95}, "not met"},
	} {
		if got := iobench.Verdict(tt.s, 0.9); got != tt.want {
			t.Errorf("Verdict(%v) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

// TestRun: the workload runs in a directory, reports four positive
// figures and leaves no file behind.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	r, err := iobench.Run(dir, iobench.Options{MiB: 8, Ops: 64, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range r.Figures() {
		if f <= 0 {
			t.Errorf("%s: %v, want > 0", iobench.Jobs[i], f)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left in %s: %v", filepath.Base(dir), left)
	}
	if _, err := iobench.Run(dir, iobench.Options{}); err == nil {
		t.Error("a run of size 0 was accepted")
	}
}
