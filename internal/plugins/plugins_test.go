package plugins

import (
	"os"
	"path/filepath"
	"testing"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime/drivertest"
)

// TestProbeFreshDataDir: the sandbox network probe runs before
// replica.Open, in the data directory `rung up` has just made (0700). It
// must pass there as on a directory an earlier run left 0711: every fresh
// `rung up` used to turn sandbox networks off ("no runtime log: exit
// status 128"), since the probe's sandbox could not reach its bundle.
func TestProbeFreshDataDir(t *testing.T) {
	drivertest.RequireRoot(t)
	runsc := drivertest.NetworkRunsc(t)
	parent := drivertest.SearchableTempDir(t)
	for _, tc := range []struct {
		name string
		mode os.FileMode
	}{{"fresh", 0o700}, {"left by an earlier run", 0o711}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(parent, filepath.Base(t.Name()))
			if err := os.Mkdir(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := probeSandboxNetwork(t.Context(), dir, replica.Options{}, Config{Runsc: runsc}); err != nil {
				t.Fatalf("probe in a %04o data dir: %v", tc.mode, err)
			}
		})
	}
}
