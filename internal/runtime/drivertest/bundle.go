package drivertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"rung.dev/rung/internal/bundle"
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
