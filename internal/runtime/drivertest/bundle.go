package drivertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"rung.dev/rung/internal/bundle"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/uidrange"
)

// RequireRoot skips a test that creates containers when not root: runc and
// runsc need root to set up user namespaces with a tenant uid range and
// cgroups. CI runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating user-namespaced containers with a tenant uid range and cgroups")
	}
}

// RequireBinary returns the path of an executable, or skips the test when
// it is not installed (CI installs runc, gvisor and busybox-static).
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install runc gvisor busybox-static): %v", name, err)
	}
	return p
}

// SearchableTempDir returns a fresh directory whose ancestors every uid can
// traverse (mode 0711): the runtimes open the rootfs from inside the
// user namespace, and runsc's gofer runs as the tenant's base uid.
func SearchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for p := dir; p != "/" && p != filepath.Clean(os.TempDir()); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Applets are the busybox applets linked into BusyboxBundle's /bin.
func Applets() []string {
	return []string{
		"sh", "cat", "echo", "false", "grep", "id", "kill", "ls", "mount",
		"sleep", "touch", "true", "unshare",
	}
}

// BusyboxBundle makes a bundle directory with a rootfs holding only
// /bin/busybox (static) and its applet links, shifted into range r with
// uidrange.Shift, and a config.json from bundle.New with r and opts. It
// skips the test when busybox is not installed.
func BusyboxBundle(t testing.TB, r uidrange.Range, opts ...bundle.Opt) string {
	t.Helper()
	bb := RequireBinary(t, "busybox")
	dir := SearchableTempDir(t)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range Applets() {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := uidrange.Shift(rootfs, r); err != nil {
		t.Fatal(err)
	}
	spec, err := bundle.New(append([]bundle.Opt{bundle.WithUserNamespace(r)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Shell is the process option that runs script with busybox sh.
func Shell(script string) bundle.Opt {
	return bundle.WithProcess([]string{"/bin/sh", "-c", script}, nil, "/")
}

// Range returns test tenant i's uid range.
func Range(t testing.TB, i int) uidrange.Range {
	t.Helper()
	r, err := uidrange.ForTenant(i)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Cgroups places a test container's cgroups under /rung-test/ID.
func Cgroups(id string) bundle.Opt {
	return bundle.WithCgroupsPath("/rung-test/" + id)
}

// Busybox returns a BundleFunc for Run that builds busybox bundles in
// tenant range r.
func Busybox(r uidrange.Range) BundleFunc {
	return func(t *testing.T, id, script string) string {
		return BusyboxBundle(t, r, Shell(script), Cgroups(id))
	}
}

// NetworkRunsc returns a runsc that can run sandbox networks
// (--network=sandbox in a user-namespaced sandbox; Debian 12's can't):
// $RUNG_RUNSC, else the module's bin/runsc that `make runsc` builds (a
// pinned gVisor from the Go module proxy). It skips the test when there is
// none, saying how to build it.
func NetworkRunsc(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RUNG_RUNSC"); p != "" {
		abs, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("RUNG_RUNSC=%s: %v", p, err)
		}
		return abs
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "bin", "runsc")
			if _, err := os.Stat(p); err != nil {
				t.Skipf("no runsc with sandbox networks: %s is missing (make runsc builds it; or set RUNG_RUNSC)", p)
			}
			return p
		}
		if dir == "/" {
			t.Skip("no runsc with sandbox networks: no module root above the test (make runsc; or set RUNG_RUNSC)")
		}
	}
}

// NewOCI is the runc or runsc driver (kind) keeping its state in dir.
func NewOCI(t testing.TB, kind, dir string) *runtime.OCI {
	t.Helper()
	newDriver := runtime.NewRunc
	if kind == "runsc" {
		newDriver = runtime.NewRunsc
	}
	d, err := newDriver(runtime.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
