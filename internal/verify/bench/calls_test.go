package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
)

// maxRunCalls is how many runtime CLI calls runtime.Run may make to run a
// replica to completion; the raw runtime makes one (`runc run`), and so
// does rung's driver (RunOnce uses `run` itself).
const maxRunCalls = 1

// TestRunCalls counts the runtime CLI calls of one runtime.Run of
// /bin/true by putting a logging wrapper in front of the real binary.
func TestRunCalls(t *testing.T) {
	for _, tier := range []string{TierContainer, TierSandbox} {
		t.Run(tier, func(t *testing.T) {
			b := newBench(t, tier)
			tb := b.tiers[tier]
			// runsc runs as the tenant's root (internal/runtime userns.go): the
			// wrapper must be reachable, and its log writable, from there.
			dir := drivertest.SearchableTempDir(t)
			log := filepath.Join(dir, "calls")
			wrapper := filepath.Join(dir, "wrap")
			script := "#!/bin/sh\necho \"$*\" >> " + log + "\nexec " + tb.bin + " \"$@\"\n"
			if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(log, nil, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(log, 0o666); err != nil {
				t.Fatal(err)
			}
			cfg := runtime.Config{Binary: wrapper, Dir: filepath.Join(b.dir, "calls-"+tier)}
			var d *runtime.OCI
			var err error
			if tier == TierContainer {
				d, err = runtime.NewRunc(cfg)
			} else {
				d, err = runtime.NewRunsc(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			exit, err := runtime.Run(t.Context(), d, "rung-bench-calls-"+tier, tb.bundle, runtime.IO{Stdout: b.devNull, Stderr: b.devNull})
			if err != nil || exit.Code != 0 {
				t.Fatalf("run = %+v, %v", exit, err)
			}
			data, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			var calls []string
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				for _, arg := range strings.Fields(line) {
					if slices.Contains([]string{"state", "create", "start", "kill", "delete", "run", "list"}, arg) {
						calls = append(calls, arg)
						break
					}
				}
			}
			t.Logf("%d runtime calls: %v (raw: 1, run)", len(calls), calls)
			if len(calls) > maxRunCalls {
				t.Errorf("runtime.Run made %d runtime calls %v, at most %d allowed", len(calls), calls, maxRunCalls)
			}
		})
	}
}
