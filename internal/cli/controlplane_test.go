package cli

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/testio"
)

// runCP runs the rung command line, with the control-plane commands
// added if root.go does not list them yet, and returns the exit code.
func runCP(ctx context.Context, stdout, stderr *testio.Buffer, args ...string) int {
	root := newRoot(stdout, stderr)
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	for _, c := range controlPlaneCommands() {
		if !have[c.Name()] {
			root.AddCommand(c)
		}
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	stderr.Write([]byte("rung: " + err.Error() + "\n"))
	if s, ok := errors.AsType[silent](err); ok {
		return s.code
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return ExitFailure
}

func rungCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb testio.Buffer
	code := runCP(t.Context(), &out, &errb, args...)
	return code, out.String(), errb.String()
}

// startUp runs `rung up` in this process and waits until the API is
// ready; it returns the data directory and how long readiness took.
func startUp(t *testing.T) (string, time.Duration) {
	t.Helper()
	return startUpIn(t, t.TempDir(), "--agent=false")
}

// startUpIn is startUp in dir with extra flags.
func startUpIn(t *testing.T, dir string, extra ...string) (string, time.Duration) {
	t.Helper()
	t.Setenv(client.ConfigEnv, filepath.Join(dir, "home", "config.json"))
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testio.Buffer
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		done <- runCP(ctx, &out, &errb, append([]string{"up", "--data-dir", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0"}, extra...)...)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("rung up exited %d: %s", code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("rung up did not shut down within 15s")
		}
	})
	// Poll readiness: the client config appears once the API listens.
	cfgPath := filepath.Join(dir, "home", "config.json")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("rung up not ready after 30s; stdout %q stderr %q", out.String(), errb.String())
		}
		select {
		case code := <-done:
			t.Fatalf("rung up exited %d: %s", code, errb.String())
		default:
		}
		if cfg, err := client.LoadConfig(cfgPath); err == nil {
			if resp, err := http.Get(cfg.Server + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := time.Since(start)
	for _, want := range []string{"rung is up at http://127.0.0.1:", "admin token:", "client config:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q: %s", want, out.String())
		}
	}
	return filepath.Join(dir, "data"), ready
}

// TestUpApplyGetDelete is the README demo against the control plane, end
// to end through the command line: up, apply the university example, get,
// describe, delete.
func TestUpApplyGetDelete(t *testing.T) {
	data, ready := startUp(t)
	t.Logf("rung up ready in %v", ready)
	for _, f := range []string{filepath.Join(data, "client.json"), filepath.Join(data, "admin.token"), os.Getenv(client.ConfigEnv)} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}

	code, out, errs := rungCmd(t, "apply", "-f", "../../examples/university")
	if code != 0 {
		t.Fatalf("apply: %d %s %s", code, out, errs)
	}
	for _, want := range []string{"tenant biology created", "topology campus created", "workload biology/sequencer created", "workload geology/maps created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	// Idempotent.
	if code, out, _ := rungCmd(t, "apply", "-f", "../../examples/university"); code != 0 || strings.Contains(out, "created") || strings.Contains(out, "updated") {
		t.Errorf("second apply: %d\n%s", code, out)
	}

	code, out, errs = rungCmd(t, "get", "workloads")
	if code != 0 {
		t.Fatalf("get: %d %s", code, errs)
	}
	var rows []string
	for _, l := range strings.Split(out, "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{"TENANT NAME REPLICAS PLACED TIERS NODES", "biology sequencer 3 3/3 container×3 ", "geology rocks 2 2/2 container×2 "} {
		if !slices.ContainsFunc(rows, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("get workloads lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := rungCmd(t, "get", "workloads", "-o", "json"); code != 0 || !strings.Contains(out, `"items"`) || !strings.Contains(out, `"sequencer"`) {
		t.Errorf("get -o json: %d %s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "workload", "sequencer", "-o", "yaml"); code != 0 || !strings.Contains(out, "tenant: biology") {
		t.Errorf("get one: %d %s", code, out)
	}
	code, out, _ = rungCmd(t, "describe", "workload", "biology/sequencer")
	if code != 0 || !strings.Contains(out, "Placements:") || !strings.Contains(out, "apply") || !strings.Contains(out, "created") {
		t.Errorf("describe: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "events"); code != 0 || !strings.Contains(out, "Workload biology/sequencer") {
		t.Errorf("get events: %d\n%s", code, out)
	}
	if code, out, _ := rungCmd(t, "get", "plan"); code != 0 || !strings.Contains(out, "7 placed") {
		t.Errorf("get plan: %d\n%s", code, out)
	}

	// A tenant token sees only its tenant.
	code, tok, errs := rungCmd(t, "token", "create", "--role", "tenant-viewer", "--tenant", "geology")
	if code != 0 {
		t.Fatalf("token create: %d %s", code, errs)
	}
	code, out, _ = rungCmd(t, "get", "workloads", "--token", strings.TrimSpace(tok))
	if code != 0 || strings.Contains(out, "biology") || !strings.Contains(out, "rocks") {
		t.Errorf("viewer get: %d\n%s", code, out)
	}
	code, _, errs = rungCmd(t, "delete", "workload", "geology/rocks", "--token", strings.TrimSpace(tok))
	if code == 0 || !strings.Contains(errs, "may not delete") {
		t.Errorf("viewer delete: %d %s", code, errs)
	}
	code, _, errs = rungCmd(t, "get", "workload", "biology/sequencer", "--token", strings.TrimSpace(tok))
	if code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("viewer get other tenant: %d %s", code, errs)
	}

	// Errors from the server name the file and line of the object.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: rung.dev/v1\nkind: Workload\nmetadata: {name: big, tenant: biology}\nspec:\n  image: busybox:latest\n  replicas: 49\n"), 0o644)
	code, _, errs = rungCmd(t, "apply", "-f", bad)
	if code != ExitFailure || !strings.Contains(errs, "bad.yaml:1: workload biology/big: tenant biology quota exceeded") {
		t.Errorf("apply over quota: %d %s", code, errs)
	}

	code, out, errs = rungCmd(t, "delete", "workload", "biology/notebook")
	if code != 0 || !strings.Contains(out, "workload biology/notebook deleted") {
		t.Fatalf("delete: %d %s %s", code, out, errs)
	}
	if code, _, errs := rungCmd(t, "get", "workload", "biology/notebook"); code == 0 || !strings.Contains(errs, "not found") {
		t.Errorf("get deleted: %d %s", code, errs)
	}
	code, out, errs = rungCmd(t, "delete", "-f", "../../examples/university")
	if code == 0 || !strings.Contains(out, "tenant geology deleted") {
		// notebook is already gone: one failure, the rest deleted.
		t.Errorf("delete -f: %d\n%s\n%s", code, out, errs)
	}
	if code, out, _ := rungCmd(t, "get", "tenants"); code != 0 || !strings.Contains(out, "no tenants") {
		t.Errorf("after delete: %d %s", code, out)
	}
}

// TestClientFlags: with no config and no flags the commands say what to do.
func TestClientFlags(t *testing.T) {
	t.Setenv(client.ConfigEnv, filepath.Join(t.TempDir(), "none.json"))
	t.Setenv(TokenEnv, "")
	code, _, errs := rungCmd(t, "get", "workloads")
	if code != ExitInvalid || !strings.Contains(errs, "run `rung up`") {
		t.Errorf("no config: %d %s", code, errs)
	}
	code, _, errs = rungCmd(t, "get", "gadgets", "--server", "127.0.0.1:1", "--token", "x")
	if code != ExitInvalid || !strings.Contains(errs, "unknown kind") {
		t.Errorf("bad kind: %d %s", code, errs)
	}
	var _ *cobra.Command
}
