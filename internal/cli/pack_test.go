package cli

import (
	"archive/tar"
	"bytes"
	stdcmp "cmp"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"rung.dev/rung/internal/image"
	"rung.dev/rung/internal/runtime/drivertest"
)

// requireRunc skips a test that runs replicas when what it needs is
// missing (make test installs runc and busybox-static).
func requireRunc(t *testing.T) {
	t.Helper()
	drivertest.RequireRoot(t)
	drivertest.RequireBinary(t, "runc")
	if _, err := os.Stat(image.BusyboxPath); err != nil {
		t.Skipf("%s missing (busybox-static; make test installs it): %v", image.BusyboxPath, err)
	}
}

// appDir lays out what a newcomer packs: a directory with a static busybox,
// the applets they use linked to it, and their own script.
func appDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", "app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile(image.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "id", "cat", "ls", "stat", "test", "true", "grep"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "app/hello.sh"), []byte("#!/bin/sh\necho \"hello as $(id -u):$(id -g)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNewcomerPackCheckRun is the path of a first-time user: pack a
// directory with --user, check the image (admitted, with the missing
// HEALTHCHECK as a note), and run it under runc as that user, in the
// tenant's user namespace with seccomp. The same directory packed to run as
// root is refused by check and by run with the finding that blocks, and a
// tenant that blocks on low findings refuses the image until it gets a
// --healthcheck.
func TestNewcomerPackCheckRun(t *testing.T) {
	requireRunc(t)
	data := drivertest.SearchableTempDir(t)
	dir := appDir(t)

	code, out, stderr := run(t, "image", "--data-dir", data, "pack", dir, "--tag", "app:1", "--user", "1000")
	if code != ExitOK || !strings.HasPrefix(out, "app:1 sha256:") {
		t.Fatalf("pack: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, "check", "image", "--data-dir", data, "app:1")
	if code != ExitOK || !strings.Contains(out, "ADMITTED") || !strings.Contains(out, "CIS-4.6") ||
		!strings.Contains(out, "notes (do not reject)") || strings.Contains(out, "\nfindings:") {
		t.Fatalf("check image app:1: exit %d, want admitted with the healthcheck as a note\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "app:1", "--",
		"sh", "-c", "id; /app/hello.sh; grep Seccomp: /proc/self/status; cat /proc/self/uid_map")
	if code != ExitOK {
		t.Fatalf("run app:1: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"uid=1000 gid=1000", "hello as 1000:1000", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("run app:1: output lacks %q:\n%s", want, out)
		}
	}
	// uid 0 inside is a host uid of the tenant's range, never host root.
	if f := strings.Fields(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]); len(f) != 3 || f[0] != "0" || f[1] == "0" {
		t.Errorf("uid_map %q: want 0 mapped to the tenant's range", f)
	}

	// The refusal: the same directory, to run as root.
	if code, out, stderr := run(t, "image", "--data-dir", data, "pack", dir, "--tag", "app:root", "--user", "0"); code != ExitOK {
		t.Fatalf("pack --user 0: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = run(t, "check", "image", "--data-dir", data, "app:root")
	if code != ExitRejected || !strings.Contains(out, "REJECTED") || !strings.Contains(out, "CIS-4.1") || !strings.Contains(out, "USER 0 is root") {
		t.Errorf("check image app:root: exit %d, want %d naming CIS-4.1\n%s", code, ExitRejected, out)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "app:root", "--", "id")
	if code == ExitOK || strings.Contains(out, "uid=") || !strings.Contains(stderr, "CIS-4.1") {
		t.Errorf("run app:root: exit %d out %q stderr %q; want a refusal naming CIS-4.1 and nothing run", code, out, stderr)
	}

	// The node applies the tenant's threshold too (rung run takes it as
	// --block-severity): at critical, root runs, as uid 0 of the tenant's
	// range; at low, the image without a healthcheck does not.
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "--block-severity", "critical", "app:root", "--", "sh", "-c", "id -u; cat /proc/self/uid_map")
	if f := strings.Fields(out); code != ExitOK || len(f) != 4 || f[0] != "0" || f[1] != "0" || f[2] == "0" {
		t.Errorf("run app:root at critical: exit %d out %q stderr %q; want uid 0 mapped to the tenant's range", code, out, stderr)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "--block-severity", "low", "app:1", "--", "id")
	if code == ExitOK || out != "" || !strings.Contains(stderr, "CIS-4.6") {
		t.Errorf("run app:1 at low: exit %d out %q stderr %q; want a refusal naming CIS-4.6", code, out, stderr)
	}

	// A user name can't be mapped by the node: refused at pack, naming --user.
	if code, _, stderr := run(t, "image", "--data-dir", data, "pack", dir, "--tag", "app:name", "--user", "alice"); code != ExitInvalid || !strings.Contains(stderr, `user "alice"`) {
		t.Errorf("pack --user alice: exit %d, stderr %q; want %d naming the user", code, stderr, ExitInvalid)
	}

	// A tenant blocking on low findings refuses the image without a
	// healthcheck, and admits it once packed with one.
	mdir := t.TempDir()
	write(t, mdir, "t.yaml", "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: t}\nspec: {images: {blockSeverity: low}}\n")
	code, out, _ = run(t, "check", "image", "--data-dir", data, "-f", mdir, "--tenant", "t", "app:1")
	if code != ExitRejected || !strings.Contains(out, "CIS-4.6") {
		t.Errorf("check app:1 at blockSeverity low: exit %d, want %d naming CIS-4.6\n%s", code, ExitRejected, out)
	}
	code, out, stderr = run(t, "image", "--data-dir", data, "pack", dir, "--tag", "app:2", "--user", "1000:1000",
		"--entrypoint", "/app/hello.sh", "--healthcheck", `["/bin/true"]`, "--healthcheck-interval", "10s", "--healthcheck-retries", "2")
	if code != ExitOK {
		t.Fatalf("pack --healthcheck: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = run(t, "check", "image", "--data-dir", data, "-f", mdir, "--tenant", "t", "app:2")
	if code != ExitOK || strings.Contains(out, "CIS-4.6") {
		t.Errorf("check app:2 at blockSeverity low: exit %d, want admitted without CIS-4.6\n%s", code, out)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "app:2")
	if code != ExitOK || strings.TrimSpace(out) != "hello as 1000:1000" {
		t.Errorf("run app:2 (its entrypoint): exit %d out %q stderr %q", code, out, stderr)
	}
	if code, _, stderr := run(t, "image", "--data-dir", data, "pack", dir, "--tag", "app:3", "--healthcheck", `["/bin/true"`); code != ExitInvalid || !strings.Contains(stderr, "--healthcheck") {
		t.Errorf("pack with a broken --healthcheck: exit %d stderr %q", code, stderr)
	}
}

// TestPackSpecialRoot packs a root with device nodes, a socket, a fifo and
// setuid/setgid files, as made by mknod, mkfifo and chmod: pack leaves the
// special files out and strips the bits, saying so; check admits it; it
// runs. An image made elsewhere with the same things is judged the same
// way by check (notes, not findings) and unpacked the same way by run:
// inside the replica, no setuid bit and no device of the image remain.
func TestPackSpecialRoot(t *testing.T) {
	requireRunc(t)
	data := drivertest.SearchableTempDir(t)
	dir := appDir(t)
	for _, c := range [][]string{
		{"mkdir", "-p", dir + "/dev", dir + "/run", dir + "/var/mail"},
		{"mknod", "-m", "666", dir + "/dev/null", "c", "1", "3"},
		{"mknod", "-m", "660", dir + "/dev/sda", "b", "8", "0"},
		{"mkfifo", dir + "/run/initctl"},
		{"cp", dir + "/bin/busybox", dir + "/bin/su"},
		{"chmod", "4755", dir + "/bin/su"},
		{"chmod", "2775", dir + "/var/mail"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	l, err := net.Listen("unix", filepath.Join(dir, "run/app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	code, out, stderr := run(t, "image", "--data-dir", data, "pack", dir, "--tag", "special:1")
	if code != ExitOK {
		t.Fatalf("pack: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"left out 4 device node(s), fifo(s) and socket(s)", "dev/null (character device)", "dev/sda (block device)",
		"run/app.sock (socket)", "run/initctl (fifo)", "stripped setuid/setgid bits from 2", "bin/su", "var/mail"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("pack notes lack %q:\n%s", want, stderr)
		}
	}
	if code, out, _ := run(t, "check", "image", "--data-dir", data, "special:1"); code != ExitOK || strings.Contains(out, "CIS-4.8") {
		t.Errorf("check special:1: exit %d; want admitted, nothing left to strip\n%s", code, out)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", "special:1", "--",
		"sh", "-c", "stat -c '%A %n' /bin/su /var/mail; test -e /dev/sda || echo no-sda; test -e /run/initctl || echo no-fifo")
	if code != ExitOK {
		t.Fatalf("run special:1: exit %d\n%s%s", code, out, stderr)
	}
	if want := "-rwxr-xr-x /bin/su\ndrwxrwxr-x /var/mail\nno-sda\nno-fifo\n"; out != want {
		t.Errorf("inside special:1:\n%s\nwant:\n%s", out, want)
	}

	// The same things in an image built elsewhere (an OCI layout).
	lay := filepath.Join(t.TempDir(), "layout")
	writeLayout(t, lay, dir)
	ref := "oci-layout:" + lay
	code, out, _ = run(t, "check", "image", "--data-dir", data, ref)
	if code != ExitOK || !strings.Contains(out, "ADMITTED") {
		t.Fatalf("check %s: exit %d\n%s", ref, code, out)
	}
	notes := out[strings.Index(out, "notes (do not reject)"):]
	for _, want := range []string{"CIS-4.8", "setuid /bin/su", "RUNG-image-special-files", "character device /dev/null", "block device /dev/sda", "fifo /run/initctl"} {
		if !strings.Contains(notes, want) {
			t.Errorf("check %s: notes lack %q\n%s", ref, want, out)
		}
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "t", ref, "--",
		"sh", "-c", "stat -c '%A %n' /bin/su; test -e /dev/sda || echo no-sda; test -e /run/initctl || echo no-fifo")
	if code != ExitOK || out != "-rwxr-xr-x /bin/su\nno-sda\nno-fifo\n" {
		t.Errorf("run %s: exit %d out %q stderr %q", ref, code, out, stderr)
	}
}

// writeLayout writes an OCI layout of one layer holding dir's busybox and
// links, plus a setuid copy of busybox, two device nodes and a fifo, as a
// hand-made tar (the way other tools write them).
func writeLayout(t *testing.T, path, dir string) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	bb, err := os.ReadFile(filepath.Join(dir, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	hdrs := []struct {
		h    tar.Header
		body []byte
	}{
		{tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb},
		{tar.Header{Name: "bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: int64(len(bb))}, bb},
		{tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, nil},
		{tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8}, nil},
		{tar.Header{Name: "run/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "run/initctl", Typeflag: tar.TypeFifo, Mode: 0o600}, nil},
	}
	for _, a := range []string{"sh", "stat", "test"} {
		hdrs = append(hdrs, struct {
			h    tar.Header
			body []byte
		}{tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil})
	}
	for _, e := range hdrs {
		if err := tw.WriteHeader(&e.h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goruntime.GOARCH
	cf.Config.User = "1000"
	cf.Config.Env = []string{image.DefaultPath}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	lp, err := layout.Write(path, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
}

// TestPackDebootstrapRoot packs a real Debian root made by debootstrap
// (minbase, about 200 MB, with device nodes in /dev and setuid programs),
// checks it and runs /bin/true in it under runc.
func TestPackDebootstrapRoot(t *testing.T) {
	requireRunc(t)
	deboot := drivertest.RequireBinary(t, "debootstrap")
	if testing.Short() {
		t.Skip("-short: debootstrap downloads about 40 MB from Debian's mirror and takes a minute")
	}
	mirror := stdcmp.Or(os.Getenv("RUNG_DEBIAN_MIRROR"), "http://deb.debian.org/debian")
	data := drivertest.SearchableTempDir(t)
	root := filepath.Join(t.TempDir(), "root")
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), deboot, "--variant=minbase", "bookworm", root, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap from %s (set RUNG_DEBIAN_MIRROR for another): %v\n%s", mirror, err, lastLines(string(out), 20))
	}
	packed := time.Now()

	code, out, stderr := run(t, "image", "--data-dir", data, "pack", root, "--tag", "bookworm:minbase")
	if code != ExitOK {
		t.Fatalf("pack: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"dev/null (character device)", "stripped setuid/setgid bits", "usr/bin/passwd"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("pack notes lack %q:\n%s", want, stderr)
		}
	}
	t.Logf("debootstrap %s, pack %s", packed.Sub(start).Round(time.Second), time.Since(packed).Round(time.Second))
	code, out, _ = run(t, "check", "image", "--data-dir", data, "bookworm:minbase")
	if code != ExitOK || !strings.Contains(out, "ADMITTED") {
		t.Errorf("check image: exit %d\n%s", code, out)
	}
	code, out, stderr = run(t, "run", "--data-dir", data, "--tenant", "deb", "bookworm:minbase", "--", "/bin/true")
	if code != ExitOK {
		t.Fatalf("run -- /bin/true: exit %d\n%s%s", code, out, stderr)
	}
	t.Logf("whole test %s", time.Since(start).Round(time.Second))
}

// lastLines keeps the end of a long output for a failure message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestArgvFlag(t *testing.T) {
	tests := []struct {
		name    string
		vals    []string
		program bool
		want    []string
		bad     bool
	}{
		{name: "one per flag", vals: []string{"/app/run", "--serve"}, program: true, want: []string{"/app/run", "--serve"}},
		{name: "json array", vals: []string{`["/app/run", "--serve", "a b"]`}, program: true, want: []string{"/app/run", "--serve", "a b"}},
		{name: "program with a space", vals: []string{"/app/run --serve"}, program: true, bad: true},
		{name: "argument with a space", vals: []string{"hello world"}, want: []string{"hello world"}},
		{name: "broken json", vals: []string{`["/app/run"`}, program: true, bad: true},
		{name: "empty json", vals: []string{`[]`}, bad: true},
		{name: "none", vals: nil, program: true, want: nil},
	}
	for _, tc := range tests {
		got, err := argvFlag("entrypoint", tc.vals, tc.program)
		if tc.bad {
			if e, ok := errors.AsType[*exitError](err); !ok || e.code != ExitInvalid || !strings.Contains(err.Error(), "--entrypoint") {
				t.Errorf("%s: error %v, want an invalid-input error naming --entrypoint", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}
