package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"rung.dev/rung/internal/image/imagetest"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func busyboxDir(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("needs %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	d := filepath.Join(t.TempDir(), "busybox")
	if err := BusyboxRoot(d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want source
	}{
		{"busybox", source{kind: fromStore, name: "busybox", tag: "latest"}},
		{"rung/busybox:1.36", source{kind: fromStore, name: "rung/busybox", tag: "1.36"}},
		{"a.b/c", source{kind: fromRegistry, name: "a.b/c", tag: "latest"}},
		{"127.0.0.1:5000/team/app:v1", source{kind: fromRegistry, name: "127.0.0.1:5000/team/app", tag: "v1"}},
		{"oci-layout:/tmp/x:v2", source{kind: fromLayout, path: "/tmp/x", tag: "v2"}},
		{"oci-layout:/tmp/a:b/c", source{kind: fromLayout, path: "/tmp/a:b/c"}},
		{"docker-archive:/tmp/x.tar", source{kind: fromArchive, path: "/tmp/x.tar"}},
	}
	for _, tt := range tests {
		got, err := parseRef(tt.in)
		if err != nil {
			t.Errorf("parseRef(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(source{})); diff != "" {
			t.Errorf("parseRef(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	d := "sha256:" + strings.Repeat("0", 64)
	if got, err := parseRef("app@" + d); err != nil || got.digest.String() != d || got.name != "app" || got.tag != "" {
		t.Errorf("parseRef(app@digest) = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "UPPER", "a:b:c", "a@sha256:12", "x/:t", "oci-layout:", "name:bad tag"} {
		if _, err := parseRef(bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("parseRef(%q) error %v, want ErrInvalidRef", bad, err)
		}
	}
}

func TestPackUnpackBusybox(t *testing.T) {
	src := busyboxDir(t)
	if err := os.Link(filepath.Join(src, "etc/passwd"), filepath.Join(src, "etc/passwd.hard")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	ctx := t.Context()
	d, err := s.Pack(ctx, src, "rung/busybox:test", PackOptions{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}})
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic: another store, the same digest.
	if d2, err := openStore(t).Pack(ctx, src, "other:1", PackOptions{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "true"}}); err != nil || d2 != d {
		t.Fatalf("second pack = %s, %v; want %s", d2, err, d)
	}
	img, got, err := s.Resolve(ctx, "rung/busybox:test")
	if err != nil || got != d {
		t.Fatalf("Resolve = %s, %v; want %s", got, err, d)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != DefaultUser || !slices.Equal(cf.Config.Entrypoint, []string{"/bin/sh"}) ||
		cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !slices.Equal(cf.Config.Env, []string{DefaultPath}) {
		t.Errorf("config %+v", cf)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}

	dest := filepath.Join(t.TempDir(), "rootfs")
	var st UnpackStats
	if err := Unpack(ctx, img, dest, UnpackOptions{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(BusyboxPath)
	if b, _ := os.ReadFile(filepath.Join(dest, "bin/busybox")); !bytes.Equal(b, want) {
		t.Error("bin/busybox differs from " + BusyboxPath)
	}
	modes := map[string]fs.FileMode{
		"bin/busybox": 0o755, "tmp": fs.ModeDir | fs.ModeSticky | 0o777, "proc": fs.ModeDir | 0o555,
		"root": fs.ModeDir | 0o700, "etc/passwd": 0o644,
	}
	for p, m := range modes {
		fi, err := os.Lstat(filepath.Join(dest, p))
		if err != nil || fi.Mode() != m {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, m)
		}
	}
	for _, a := range []string{"sh", "true", "unshare", "mount", "id"} {
		if l, err := os.Readlink(filepath.Join(dest, "bin", a)); err != nil || l != "busybox" {
			t.Errorf("bin/%s -> %q (%v)", a, l, err)
		}
	}
	a, _ := os.Stat(filepath.Join(dest, "etc/passwd"))
	b, _ := os.Stat(filepath.Join(dest, "etc/passwd.hard"))
	if !os.SameFile(a, b) {
		t.Error("hard link not kept")
	}
	if len(st.Stripped) != 0 {
		t.Errorf("stripped %v", st.Stripped)
	}
	if os.Geteuid() == 0 {
		out, err := chrootRun(dest, "/bin/sh", "-c", "id -u; echo hi")
		if err != nil || out != "0\nhi\n" {
			t.Errorf("sh in the rootfs: %q, %v", out, err)
		}
	}
}

// chrootRun runs a command in root; it needs root.
func chrootRun(root string, args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{DefaultPath}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestPackRefuses(t *testing.T) {
	if _, err := openStore(t).Pack(t.Context(), t.TempDir(), "x@sha256:"+strings.Repeat("0", 64), PackOptions{}); !errors.Is(err, ErrInvalidRef) {
		t.Fatalf("Pack to a digest: %v, want ErrInvalidRef", err)
	}
}

func TestLoadDockerArchive(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	img1, _ := random.Image(512, 2)
	img2, _ := random.Image(512, 1)
	file := filepath.Join(t.TempDir(), "images.tar")
	refs := map[name.Reference]v1.Image{
		name.MustParseReference("example/app:v1"):      img1,
		name.MustParseReference("registry.test/x:2.0"): img2,
	}
	if err := tarball.MultiRefWriteToFile(file, refs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(ctx, ArchivePrefix+file)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]v1.Image{"example/app:v1": img1, "registry.test/x:2.0": img2}
	if len(got) != 2 {
		t.Fatalf("Load = %v", got)
	}
	for _, r := range got {
		want, ok := names[r.String()]
		if !ok {
			t.Fatalf("unexpected name %s", r)
		}
		img, d, err := s.Resolve(ctx, r.String())
		if err != nil || d != r.Digest {
			t.Fatalf("Resolve(%s) = %s, %v", r, d, err)
		}
		sameLayers(t, want, img)
	}
	// A bare file path works too, and reading in place without storing.
	if _, err := s.Load(ctx, file); err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(t.TempDir(), "one.tar")
	if err := tarball.WriteToFile(one, name.MustParseReference("solo:1"), img1); err != nil {
		t.Fatal(err)
	}
	img, _, err := s.Resolve(ctx, ArchivePrefix+one)
	if err != nil {
		t.Fatal(err)
	}
	sameLayers(t, img1, img)
}

// sameLayers compares images by their uncompressed layers.
func sameLayers(t *testing.T, want, got v1.Image) {
	t.Helper()
	wc, _ := want.ConfigFile()
	gc, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(wc.RootFS.DiffIDs, gc.RootFS.DiffIDs) {
		t.Fatalf("diff ids %v, want %v", gc.RootFS.DiffIDs, wc.RootFS.DiffIDs)
	}
}

func TestLoadOCILayout(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "My_Layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	tagged, _ := random.Image(256, 1)
	named, _ := random.Image(256, 1)
	bare, _ := random.Image(256, 1)
	amd, _ := random.Image(256, 1)
	arm, _ := random.Image(256, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	must(t, p.AppendImage(tagged, layout.WithAnnotations(map[string]string{refNameAnnotation: "v2"})))
	must(t, p.AppendImage(named, layout.WithAnnotations(map[string]string{refNameAnnotation: "example.com/team/app:1.0"})))
	must(t, p.AppendImage(bare))
	must(t, p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: "multi"})))

	got, err := s.Load(ctx, LayoutPrefix+dir)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(img v1.Image) v1.Hash { d, _ := img.Digest(); return d }
	native := amd
	if runtime.GOARCH == "arm64" {
		native = arm
	}
	want := []Ref{
		{Name: "my-layout", Tag: "v2", Digest: digest(tagged)},
		{Name: "example.com/team/app", Tag: "1.0", Digest: digest(named)},
		{Name: "my-layout", Digest: digest(bare)},
		{Name: "my-layout", Tag: "multi", Digest: digest(native)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Load (-want +got):\n%s", diff)
	}
	for _, r := range want {
		if _, d, err := s.Resolve(ctx, r.String()); err != nil || d != r.Digest {
			t.Errorf("Resolve(%s) = %s, %v", r, d, err)
		}
	}
	// One tag, read in place.
	if _, d, err := s.Resolve(ctx, LayoutPrefix+dir+":v2"); err != nil || d != digest(tagged) {
		t.Errorf("Resolve(layout:v2) = %s, %v", d, err)
	}
	if _, err := s.Load(ctx, LayoutPrefix+dir+":nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a missing tag: %v", err)
	}
	if _, err := s.Load(ctx, LayoutPrefix+filepath.Join(dir, "missing")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a missing layout: %v", err)
	}
}

func parse(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPull(t *testing.T) {
	host := imagetest.Registry(t)
	ctx := t.Context()
	s := openStore(t)
	img, _ := random.Image(4096, 3)
	tag := host + "/team/app:v1"
	must(t, remote.Write(parse(t, tag), img, remote.WithContext(ctx)))
	want, _ := img.Digest()

	var mu sync.Mutex
	last := map[v1.Hash][2]int64{}
	p := ProgressFunc(func(b v1.Hash, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		last[b] = [2]int64{done, total}
	})
	r, err := s.Pull(ctx, tag, PullOptions{Progress: p})
	if err != nil {
		t.Fatal(err)
	}
	if r != (Ref{Name: host + "/team/app", Tag: "v1", Digest: want}) {
		t.Fatalf("Pull = %+v", r)
	}
	if len(last) != 3 {
		t.Errorf("progress for %d layers, want 3", len(last))
	}
	for b, dt := range last {
		if dt[0] != dt[1] || dt[1] <= 0 {
			t.Errorf("layer %s ended at %d/%d", b, dt[0], dt[1])
		}
	}
	// The tag was resolved once: moving it in the registry changes nothing here.
	other, _ := random.Image(64, 1)
	must(t, remote.Write(parse(t, tag), other, remote.WithContext(ctx)))
	got, d, err := s.Resolve(ctx, tag)
	if err != nil || d != want {
		t.Fatalf("Resolve = %s, %v; want %s", d, err, want)
	}
	sameLayers(t, img, got)
	dest := t.TempDir()
	must(t, Unpack(ctx, got, dest, UnpackOptions{}))

	// By digest.
	od, _ := other.Digest()
	r, err = s.Pull(ctx, host+"/team/app@"+od.String(), PullOptions{})
	if err != nil || r.Digest != od || r.Tag != "" {
		t.Fatalf("Pull by digest = %+v, %v", r, err)
	}
	if _, d, err := s.Resolve(ctx, r.String()); err != nil || d != od {
		t.Fatalf("Resolve(%s) = %s, %v", r, d, err)
	}

	// An index resolves to this machine's platform.
	amd, _ := random.Image(64, 1)
	arm, _ := random.Image(64, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	must(t, remote.WriteIndex(parse(t, host+"/multi:1"), idx, remote.WithContext(ctx)))
	r, err = s.Pull(ctx, host+"/multi:1", PullOptions{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}})
	if ad, _ := arm.Digest(); err != nil || r.Digest != ad {
		t.Fatalf("Pull of an index = %+v, %v; want %s", r, err, ad)
	}

	if _, err := s.Pull(ctx, host+"/team/missing:1", PullOptions{}); err == nil {
		t.Error("Pull of a missing image succeeded")
	}
}

func TestPullCanceled(t *testing.T) {
	host := imagetest.Registry(t)
	img, _ := random.Image(1024, 1)
	must(t, remote.Write(parse(t, host+"/a:1"), img))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := openStore(t).Pull(ctx, host+"/a:1", PullOptions{}); err == nil {
		t.Fatal("Pull with a canceled context succeeded")
	}
}

func TestListRemove(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	s, err := Open(ctx, root)
	must(t, err)
	a := t.TempDir()
	must(t, os.WriteFile(filepath.Join(a, "f"), []byte("a"), 0o644))
	b := t.TempDir()
	must(t, os.WriteFile(filepath.Join(b, "f"), []byte("b"), 0o644))
	da, err := s.Pack(ctx, a, "app:1", PackOptions{})
	must(t, err)
	_, err = s.Pack(ctx, a, "app:latest", PackOptions{})
	must(t, err)
	db, err := s.Pack(ctx, b, "zeta", PackOptions{})
	must(t, err)

	s2, err := Open(ctx, root) // reopened: the index is on disk
	must(t, err)
	list, err := s2.List(ctx)
	must(t, err)
	var names []string
	for _, e := range list {
		names = append(names, e.String())
		if e.Size <= 0 || !e.Created.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: size %d created %v", e.Ref, e.Size, e.Created)
		}
	}
	if want := []string{"app:1", "app:latest", "zeta:latest"}; !slices.Equal(names, want) {
		t.Fatalf("List = %v, want %v", names, want)
	}

	must(t, s.Remove(ctx, "app:1"))
	if _, _, err := s.Resolve(ctx, "app:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve after Remove: %v", err)
	}
	if _, d, err := s.Resolve(ctx, "app"); err != nil || d != da {
		t.Errorf("app:latest shares the blobs and must stay: %v", err)
	}
	img, _, err := s.Resolve(ctx, "app")
	must(t, err)
	must(t, Unpack(ctx, img, t.TempDir(), UnpackOptions{}))

	blobs := func() int {
		es, err := os.ReadDir(filepath.Join(root, "images/blobs/sha256"))
		must(t, err)
		return len(es)
	}
	before := blobs()
	must(t, s.Remove(ctx, db.String())) // a bare digest removes every name of it
	if after := blobs(); after != before-3 {
		t.Errorf("blobs %d -> %d, want 3 fewer (manifest, config, layer)", before, after)
	}
	if err := s.Remove(ctx, "zeta"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove of a missing name: %v", err)
	}
	must(t, s.Remove(ctx, "app@"+da.String()))
	if list, _ := s.List(ctx); len(list) != 0 || blobs() != 0 {
		t.Errorf("store not empty: %v, %d blobs", list, blobs())
	}
}

// Writers in parallel must not lose each other's names.
func TestConcurrentPack(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			s, err := Open(ctx, root) // separate Store values, as separate processes would have
			if err == nil {
				_, err = s.Pack(ctx, src, fmt.Sprintf("app:%d", i), PackOptions{})
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	s, _ := Open(ctx, root)
	list, err := s.List(ctx)
	must(t, err)
	if len(list) != 8 {
		t.Fatalf("List has %d names, want 8", len(list))
	}
}
