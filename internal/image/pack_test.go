package image

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestPackSpecialFiles packs a root like debootstrap's: device nodes, a
// fifo and a socket are left out with a note, setuid/setgid bits are
// stripped with a note (as Unpack does), and hard links, long names and
// symlinks pointing outside the directory are kept as they are. Unpacking
// the image gives the same tree, and nothing outside it is read.
func TestPackSpecialFiles(t *testing.T) {
	src := t.TempDir()
	mk := func(p string, body string, mode fs.FileMode) {
		t.Helper()
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/bin/passwd", "suid", fs.ModeSetuid|0o755)
	mk("usr/bin/wall", "sgid", fs.ModeSetgid|0o755)
	mk("etc/secret-outside-target", "in the root", 0o644)
	if err := os.MkdirAll(filepath.Join(src, "var/mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "var/mail"), fs.ModeDir|fs.ModeSetgid|0o2775); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "usr/bin/passwd"), filepath.Join(src, "usr/bin/passwd.hard")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("d", 120) + "/" + strings.Repeat("f", 200)
	mk(long, "long", 0o644)
	links := map[string]string{
		"bin/sh-host":  "/bin/sh",               // absolute: the container's /bin/sh, never the host's
		"escape":       "../../../../../../etc", // relative, out of the directory
		"dangling":     "nowhere",
		"long-target":  "/" + strings.Repeat("t", 300),
		"lib64/ld.so":  "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"etc/mtab":     "../proc/self/mounts",
		"etc/resolved": "/run/systemd/resolve/stub-resolv.conf",
	}
	for p, target := range links {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(src, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "run-initctl"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A socket made by binding a unix socket, as a running daemon leaves one.
	l, err := net.Listen("unix", filepath.Join(src, "ctl.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	wantSkipped := []string{"ctl.sock (socket)", "run-initctl (fifo)"}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(src, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(src, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))); err != nil {
			t.Fatal(err)
		}
		wantSkipped = append([]string{"dev/null (character device)", "dev/sda (block device)"}, wantSkipped...)
	} else {
		t.Log("not root: device nodes are not made (mknod needs root); the fifo and the socket still are")
	}

	s := openStore(t)
	var st PackStats
	d, err := s.Pack(t.Context(), src, "deb:1", PackOptions{Stats: &st, User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(st.Skipped)
	slices.Sort(wantSkipped)
	if diff := cmp.Diff(wantSkipped, st.Skipped); diff != "" {
		t.Errorf("Skipped (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"usr/bin/passwd", "usr/bin/wall", "var/mail"}, st.Stripped); diff != "" {
		t.Errorf("Stripped (-want +got):\n%s", diff)
	}

	img, got, err := s.Resolve(t.Context(), "deb:1")
	if err != nil || got != d {
		t.Fatalf("Resolve = %s, %v", got, err)
	}
	dest := filepath.Join(t.TempDir(), "rootfs")
	var ust UnpackStats
	if err := Unpack(t.Context(), img, dest, UnpackOptions{Stats: &ust}); err != nil {
		t.Fatal(err)
	}
	// What pack already removed, unpack has nothing left to remove.
	if len(ust.Stripped) != 0 || len(ust.Skipped) != 0 {
		t.Errorf("unpack of a packed image stripped %v, skipped %v", ust.Stripped, ust.Skipped)
	}
	for p, target := range links {
		if got, err := os.Readlink(filepath.Join(dest, p)); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want -> %q", p, got, err, target)
		}
	}
	for p, want := range map[string]fs.FileMode{"usr/bin/passwd": 0o755, "usr/bin/wall": 0o755, "var/mail": fs.ModeDir | 0o775} {
		if fi, err := os.Lstat(filepath.Join(dest, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
		}
	}
	a, _ := os.Stat(filepath.Join(dest, "usr/bin/passwd"))
	b, _ := os.Stat(filepath.Join(dest, "usr/bin/passwd.hard"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if body, err := os.ReadFile(filepath.Join(dest, long)); err != nil || string(body) != "long" {
		t.Errorf("long name: %q, %v", body, err)
	}
	for _, p := range []string{"dev/null", "dev/sda", "run-initctl", "ctl.sock"} {
		if _, err := os.Lstat(filepath.Join(dest, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was created (%v)", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dest, "dev")); err != nil || !fi.IsDir() {
		t.Errorf("dev: %v, %v; the directory stays", fi, err)
	}
}

// TestPackOptions: the config carries the user, entrypoint and healthcheck
// as given; options that would make an image that can't run are refused
// before anything is stored, naming the option.
func TestPackOptions(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	hc, err := ParseHealthcheck(`["/app", "--check"]`)
	if err != nil {
		t.Fatal(err)
	}
	opts := PackOptions{
		User: "1000:1001", Entrypoint: []string{"/app"}, Healthcheck: hc,
		HealthInterval: 10 * time.Second, HealthTimeout: 2 * time.Second, HealthStartPeriod: time.Second, HealthRetries: 4,
	}
	if _, err := s.Pack(t.Context(), src, "app:1", opts); err != nil {
		t.Fatal(err)
	}
	img, _, err := s.Resolve(t.Context(), "app:1")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	h := cf.Config.Healthcheck
	if cf.Config.User != "1000:1001" || !slices.Equal(cf.Config.Entrypoint, []string{"/app"}) || h == nil ||
		!slices.Equal(h.Test, []string{"CMD", "/app", "--check"}) || h.Interval != 10*time.Second ||
		h.Timeout != 2*time.Second || h.StartPeriod != time.Second || h.Retries != 4 {
		t.Errorf("config %+v, healthcheck %+v", cf.Config, h)
	}

	bad := []struct {
		name string
		opts PackOptions
		want string
	}{
		{"user name", PackOptions{User: "alice"}, `user "alice"`},
		{"user outside the namespace", PackOptions{User: "70000"}, `user "70000"`},
		{"group name", PackOptions{User: "1000:staff"}, `user "1000:staff"`},
		{"negative user", PackOptions{User: "-1"}, `user "-1"`},
		{"empty healthcheck command", PackOptions{Healthcheck: []string{"CMD"}}, "healthcheck"},
		{"unknown healthcheck kind", PackOptions{Healthcheck: []string{"RUN", "x"}}, "healthcheck"},
		{"two shell scripts", PackOptions{Healthcheck: []string{"CMD-SHELL", "a", "b"}}, "one script"},
		{"interval without a check", PackOptions{HealthInterval: time.Second}, "healthcheck interval"},
		{"negative timeout", PackOptions{Healthcheck: []string{"CMD", "/app"}, HealthTimeout: -time.Second}, "healthcheck timeout"},
		{"env without =", PackOptions{Env: []string{"PATH"}}, `env "PATH"`},
	}
	for _, tc := range bad {
		if _, err := s.Pack(t.Context(), src, "bad:1", tc.opts); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig naming %s", tc.name, err, tc.want)
		}
	}
	if _, _, err := s.Resolve(t.Context(), "bad:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused pack stored an image: %v", err)
	}
}

func TestParseHealthcheck(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "/bin/true", want: []string{"CMD-SHELL", "/bin/true"}},
		{in: "wget -q -O- http://localhost:8080/ || exit 1", want: []string{"CMD-SHELL", "wget -q -O- http://localhost:8080/ || exit 1"}},
		{in: `["/bin/check", "--quick"]`, want: []string{"CMD", "/bin/check", "--quick"}},
		{in: "NONE", want: []string{"NONE"}},
		{in: "", err: true},
		{in: "[]", err: true},
		{in: `["/bin/check",`, err: true},
		{in: `[1, 2]`, err: true},
	}
	for _, tc := range tests {
		got, err := ParseHealthcheck(tc.in)
		if (err != nil) != tc.err || !errors.Is(err, ErrInvalidConfig) && tc.err {
			t.Errorf("ParseHealthcheck(%q) error %v, want error %v", tc.in, err, tc.err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseHealthcheck(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestOpenRegularRefusesSwaps: a file replaced by a fifo or by a link
// between its lstat and its open is refused, without blocking on the fifo.
func TestOpenRegularRefusesSwaps(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	write := func(p string) fs.FileInfo {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := root.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	fi := write("f")
	f, err := openRegular(root, "f", fi)
	if err != nil {
		t.Fatalf("unchanged file: %v", err)
	}
	f.Close()
	// Swapped for a fifo: no writer will ever come.
	os.Remove(filepath.Join(dir, "f"))
	if err := syscall.Mkfifo(filepath.Join(dir, "f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openRegular(root, "f", fi); !errors.Is(err, errChanged) {
		t.Errorf("fifo swapped in: %v, want errChanged", err)
	}
	// Swapped for a link to another file of the root.
	write("other")
	fi = write("g")
	os.Remove(filepath.Join(dir, "g"))
	if err := os.Symlink("other", filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	if _, err := openRegular(root, "g", fi); !errors.Is(err, errChanged) {
		t.Errorf("link swapped in: %v, want errChanged", err)
	}
}
