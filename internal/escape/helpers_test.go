package escape_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rung.dev/rung/internal/bundle"
	rt "rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/drivertest"
	"rung.dev/rung/internal/uidrange"
	"rung.dev/rung/internal/verify"
)

// tier is one tier's driver under test.
type tier struct {
	name string // "container" or "sandbox"
	bin  string // "runc" or "runsc"
	d    *rt.OCI
}

// forEachTier runs f as a parallel subtest per tier, each with a driver of
// its own. A tier whose runtime is not installed is skipped with the reason.
func forEachTier(t *testing.T, f func(t *testing.T, tr tier)) {
	t.Helper()
	drivertest.RequireRoot(t)
	for _, tr := range []tier{{name: verify.TierContainer, bin: "runc"}, {name: verify.TierSandbox, bin: "runsc"}} {
		t.Run(tr.name, func(t *testing.T) {
			drivertest.RequireBinary(t, tr.bin)
			t.Parallel()
			dir := filepath.Join(drivertest.SearchableTempDir(t), tr.bin)
			var err error
			if tr.bin == "runc" {
				tr.d, err = rt.NewRunc(rt.Config{Dir: dir})
			} else {
				tr.d, err = rt.NewRunsc(rt.Config{Dir: dir})
			}
			if err != nil {
				t.Fatal(err)
			}
			f(t, tr)
		})
	}
}

func (tr tier) sandbox() bool { return tr.name == verify.TierSandbox }

// TestMain removes the probe binary if a test built it.
func TestMain(m *testing.M) {
	code := m.Run()
	if probeBin.path != "" {
		os.RemoveAll(filepath.Dir(probeBin.path))
	}
	os.Exit(code)
}

// probeBin is the probe command, built once per test binary by the first
// test that needs it.
var probeBin struct {
	once sync.Once
	path string
	err  error
}

// buildProbe builds the probe: a static Go program (CGO_ENABLED=0) that
// runs in any rootfs.
func buildProbe() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") == "" {
			return "", err
		}
	}
	dir, err := os.MkdirTemp("", "rung-probe-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command(goBin, "build", "-o", out, "rung.dev/rung/internal/escape/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build probe: %w\n%s", err, b)
	}
	return out, nil
}

// probe returns the probe binary, skipping the test when the go tool that
// builds it is missing.
func probe(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil && os.Getenv("GOROOT") == "" {
		t.Skipf("the go tool is not installed (it builds the probe that makes raw system calls): %v", err)
	}
	probeBin.once.Do(func() { probeBin.path, probeBin.err = buildProbe() })
	if probeBin.err != nil {
		t.Fatal(probeBin.err)
	}
	return probeBin.path
}

// replicaBundle makes a bundle whose rootfs holds busybox with every
// applet, the probe at /probe, an /etc/passwd with root and user 1000, and
// files (path → content, mode 0600 for the tenant's root), shifted into
// range r. The spec is bundle.New with r, RUNG_ESCAPE_PROBE=1, the test's
// cgroups path /rung-test/ID, and opts. The script runs with stderr on
// stdout.
func replicaBundle(t *testing.T, r uidrange.Range, id, script string, files map[string]string, opts ...bundle.Opt) string {
	t.Helper()
	bb := drivertest.RequireBinary(t, "busybox")
	probeBin := probe(t)
	dir := drivertest.SearchableTempDir(t)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc", "mnt", "home/user"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bb, filepath.Join(rootfs, "bin", "busybox"), 0o755)
	copyFile(t, probeBin, filepath.Join(rootfs, "probe"), 0o755)
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" || strings.ContainsRune(applet, '/') {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	all := map[string]string{
		"etc/passwd": "root:x:0:0:root:/:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\n",
	}
	for p, c := range files {
		all[p] = c
	}
	for p, c := range all {
		mode := os.FileMode(0o644)
		if _, extra := files[p]; extra {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(rootfs, p), []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(rootfs, "home/user"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := uidrange.Shift(rootfs, r); err != nil {
		t.Fatal(err)
	}
	spec, err := bundle.New(append([]bundle.Opt{
		bundle.WithUserNamespace(r),
		bundle.WithProcess([]string{"/bin/sh", "-c", "exec 2>&1\n" + script}, []string{"RUNG_ESCAPE_PROBE=1"}, "/"),
		bundle.WithCgroupsPath(cgroupPath(id)),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cgroupPath is where a test replica's cgroups live.
func cgroupPath(id string) string { return "/rung-test/" + id }

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// run runs a replica to completion and returns its exit code and output. A
// replica still running after two minutes is hung (not slow): it is killed
// and the test fails.
func run(t *testing.T, tr tier, id, dir string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	exit, err := rt.Run(ctx, tr.d, id, dir, rt.IO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("run %s: %v\n%s%s", id, err, out.String(), errb.String())
	}
	return exit.Code, out.String() + errb.String()
}

// start creates and starts a replica with output to its log file (deleted
// when the test ends) and returns its host PID.
func start(t *testing.T, tr tier, id, dir string) int {
	t.Helper()
	drivertest.Started(t, tr.d, id, dir)
	st, err := tr.d.State(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

// logsUntil polls a started replica's log until it contains marker, the
// replica stops, or two minutes pass (a hang, not a timing assertion), and
// returns the log.
func logsUntil(t *testing.T, tr tier, id, marker string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for {
		logs := readLogs(t, tr, id)
		if strings.Contains(logs, marker) {
			return logs
		}
		st, err := tr.d.State(ctx, id)
		if err != nil || st.Status == rt.Stopped {
			return readLogs(t, tr, id)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never printed %q:\n%s", id, marker, logs)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func readLogs(t *testing.T, tr tier, id string) string {
	t.Helper()
	rc, err := tr.d.Logs(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// attemptShell defines try NAME CMD...: it runs CMD and prints NAME=ok or
// NAME=fail:<its output on one line>.
const attemptShell = `try() { n=$1; shift; if o=$("$@" 2>&1); then echo "$n=ok"; else echo "$n=fail:$(echo $o | head -c 200)"; fi; }
`

// attempts parses NAME=RESULT lines of try.
func attempts(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && k != "" && !strings.ContainsAny(k, " \t") {
			m[k] = v
		}
	}
	return m
}

// requireFailed asserts that every named attempt ran and failed, with a
// message containing want[name] when given.
func requireFailed(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for name, msg := range want {
		res, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: not attempted", name)
		case !strings.HasPrefix(res, "fail:"):
			t.Errorf("%s: %s, want it to fail", name, res)
		case msg != "" && !strings.Contains(res, msg):
			t.Errorf("%s: %s, want a failure with %q", name, res, msg)
		}
	}
}

// neighbour starts another tenant's idle replica of the same tier and
// returns a check that it still runs.
func neighbour(t *testing.T, tr tier, tenant int, id string) func() {
	t.Helper()
	dir := replicaBundle(t, drivertest.Range(t, tenant), id, "sleep 600", nil, bundle.WithResources(250, 128<<20, 96))
	start(t, tr, id, dir)
	return func() {
		t.Helper()
		st, err := tr.d.State(t.Context(), id)
		if err != nil || st.Status != rt.Running {
			t.Errorf("neighbour %s = %+v, %v; want still running", id, st, err)
		}
	}
}
