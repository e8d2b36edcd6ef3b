package image

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"rung.dev/rung/internal/image/imagetest"
)

func TestUnpackRefuses(t *testing.T) {
	big := strings.Repeat("x", 4096)
	tests := []struct {
		name   string
		layers [][]ent
		opts   UnpackOptions
		path   string // entry the error must name ("" = layer-wide)
		want   error
	}{
		{name: "dotdot", layers: [][]ent{{file("../../etc/passwd", "root::0:0::/:/bin/sh\n")}},
			path: "../../etc/passwd", want: ErrUnsafePath},
		{name: "dotdot inside", layers: [][]ent{{file("a/../../x", "x")}}, path: "a/../../x", want: ErrUnsafePath},
		{name: "absolute", layers: [][]ent{{file("/abs", "x")}}, path: "/abs", want: ErrUnsafePath},
		{name: "hard link absolute", layers: [][]ent{{hardlink("shadow", "/etc/shadow")}},
			path: "shadow", want: ErrUnsafePath},
		{name: "hard link outside", layers: [][]ent{{hardlink("s", "../outside/sentinel")}},
			path: "s", want: ErrUnsafePath},
		{name: "hard link to directory", layers: [][]ent{{dir("d/"), hardlink("l", "d")}},
			path: "l", want: ErrUnsafePath},
		{name: "hard link to missing", layers: [][]ent{{hardlink("l", "nope")}},
			path: "l", want: fs.ErrNotExist},
		{name: "device node as the root", layers: [][]ent{{special(".", tar.TypeChar)}}, path: ".", want: ErrUnsafePath},
		{name: "device node outside", layers: [][]ent{{special("../dev/sda", tar.TypeBlock)}}, path: "../dev/sda", want: ErrUnsafePath},
		{name: "symlink loop", layers: [][]ent{{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}},
			path: "a/x", want: ErrUnsafePath},
		{name: "whiteout of dotdot", layers: [][]ent{{file("d/.wh..", "")}}, path: "d/.wh..", want: ErrUnsafePath},
		{name: "empty symlink", layers: [][]ent{{symlink("l", "")}}, path: "l", want: ErrUnsafePath},
		{name: "root as file", layers: [][]ent{{file(".", "x")}}, path: ".", want: ErrUnsafePath},
		{name: "layer too large", layers: [][]ent{{file("big", big)}}, opts: UnpackOptions{MaxLayerSize: 1024},
			path: "big", want: ErrTooLarge},
		{name: "image too large", layers: [][]ent{{file("a", big)}, {file("b", big)}},
			opts: UnpackOptions{MaxLayerSize: 8192, MaxTotalSize: 10000}, path: "b", want: ErrTooLarge},
		{name: "too many entries", layers: [][]ent{{file("a", ""), file("b", ""), file("c", "")}},
			opts: UnpackOptions{MaxEntries: 2}, path: "c", want: ErrTooLarge},
		{name: "path too deep", layers: [][]ent{{file(strings.Repeat("d/", 300)+"f", "")}},
			path: strings.Repeat("d/", 300) + "f", want: ErrUnsafePath},
		{name: "name too long", layers: [][]ent{{file(strings.Repeat("n", 5000), "")}},
			path: strings.Repeat("n", 5000), want: ErrUnsafePath},
		{name: "link chain too long", layers: [][]ent{{symlink("l", strings.Repeat("x/", 200)), symlink("m", "l/"+strings.Repeat("y/", 200)), file("m/f", "")}},
			path: "m/f", want: ErrUnsafePath},
		{name: "uid outside the map", layers: [][]ent{{{name: "f", uid: 70000}}},
			opts: UnpackOptions{Chown: ShiftIDs(100000, 100000, 65536)}, path: "f", want: ErrBadOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			passwd := fileSum(t, "/etc/passwd")
			img := imageOf(t, tt.layers...)
			err := Unpack(t.Context(), img, sb.root, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unpack error = %v, want %v", err, tt.want)
			}
			ue, ok := errors.AsType[*UnpackError](err)
			if !ok {
				t.Fatalf("error %T is not an *UnpackError", err)
			}
			ls, _ := img.Layers()
			last, _ := ls[len(ls)-1].Digest()
			if ue.Path != tt.path || ue.Layer != last {
				t.Errorf("error names layer %s path %q, want %s %q", ue.Layer, ue.Path, last, tt.path)
			}
			if !strings.Contains(err.Error(), last.String()) {
				t.Errorf("message %q does not name the layer", err)
			}
			sb.check(t)
			if fileSum(t, "/etc/passwd") != passwd {
				t.Fatal("/etc/passwd changed")
			}
		})
	}
}

// Symlinks whose targets lie outside the root stay links; writing through
// them lands inside the root, where the container would see it.
func TestUnpackContainsSymlinks(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]ent
		want   map[string]string // path in root -> content, or "->target" for a link
	}{
		{name: "absolute dir link",
			layers: [][]ent{{symlink("a", "/etc"), file("a/passwd", "evil")}},
			want:   map[string]string{"a": "->/etc", "etc/passwd": "evil"}},
		{name: "relative escape link",
			layers: [][]ent{{symlink("up", "../../.."), file("up/escape", "evil")}},
			want:   map[string]string{"up": "->../../..", "escape": "evil"}},
		{name: "link to outside sibling",
			layers: [][]ent{{symlink("o", "../outside"), file("o/sentinel", "evil")}},
			want:   map[string]string{"outside/sentinel": "evil"}},
		{name: "link to root",
			layers: [][]ent{{dir("tmp/"), symlink("r", "/"), file("r/tmp/x", "x")}},
			want:   map[string]string{"tmp/x": "x"}},
		{name: "link from a lower layer",
			layers: [][]ent{{symlink("etc", "/host/etc")}, {file("etc/shadow", "s")}},
			want:   map[string]string{"etc": "->/host/etc", "host/etc/shadow": "s"}},
		{name: "file replaces a link, never writes through it",
			layers: [][]ent{{symlink("f", "/etc/passwd")}, {file("f", "mine")}},
			want:   map[string]string{"f": "mine"}},
		{name: "directory replaces a link",
			layers: [][]ent{{symlink("d", "../outside")}, {dir("d/"), file("d/x", "x")}},
			want:   map[string]string{"d/x": "x"}},
		{name: "hard link through a link stays inside",
			layers: [][]ent{{file("etc/shadow", "s"), symlink("x", "/etc"), hardlink("h", "x/shadow")}},
			want:   map[string]string{"h": "s"}},
		{name: "hard link to a link links the link",
			layers: [][]ent{{symlink("s", "/etc/passwd"), hardlink("h", "s")}},
			want:   map[string]string{"h": "->/etc/passwd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			passwd := fileSum(t, "/etc/passwd")
			if err := Unpack(t.Context(), imageOf(t, tt.layers...), sb.root, UnpackOptions{}); err != nil {
				t.Fatal(err)
			}
			for p, want := range tt.want {
				full := filepath.Join(sb.root, p)
				if target, ok := strings.CutPrefix(want, "->"); ok {
					got, err := os.Readlink(full)
					if err != nil || got != target {
						t.Errorf("%s: link to %q (%v), want %q", p, got, err, target)
					}
					continue
				}
				fi, err := os.Lstat(full)
				if err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s: %v %v, want a regular file", p, fi, err)
					continue
				}
				if b, _ := os.ReadFile(full); string(b) != want {
					t.Errorf("%s = %q, want %q", p, b, want)
				}
			}
			sb.check(t)
			if fileSum(t, "/etc/passwd") != passwd {
				t.Fatal("/etc/passwd changed")
			}
		})
	}
}

// TestUnpackSkipsDeviceNodes: device nodes and fifos are not created, as
// Pack leaves them out, each listed; they still replace what a lower layer
// had at their name, and hard links to them are left out too. Everything
// else of the layer is applied.
func TestUnpackSkipsDeviceNodes(t *testing.T) {
	sb := newSandbox(t)
	img := imageOf(t,
		[]ent{file("dev/console", "lower"), file("etc/motd", "hi")},
		[]ent{
			special("dev/console", tar.TypeChar),
			special("dev/null", tar.TypeChar),
			special("dev/sda", tar.TypeBlock),
			special("run/initctl", tar.TypeFifo),
			hardlink("dev/null2", "dev/null"),
			file("etc/hostname", "box"),
		})
	var st UnpackStats
	if err := Unpack(t.Context(), img, sb.root, UnpackOptions{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	want := []string{"dev/console (character device)", "dev/null (character device)", "dev/sda (block device)",
		"run/initctl (fifo)", "dev/null2 (hard link to dev/null)"}
	if !equal(st.Skipped, want) {
		t.Errorf("Skipped = %q, want %q", st.Skipped, want)
	}
	for _, p := range []string{"dev/console", "dev/null", "dev/sda", "run/initctl", "dev/null2"} {
		if _, err := os.Lstat(filepath.Join(sb.root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (%v)", p, err)
		}
	}
	for p, body := range map[string]string{"etc/motd": "hi", "etc/hostname": "box"} {
		if b, err := os.ReadFile(filepath.Join(sb.root, p)); err != nil || string(b) != body {
			t.Errorf("%s = %q, %v", p, b, err)
		}
	}
	sb.check(t)
}

func TestUnpackStripsSetuid(t *testing.T) {
	sb := newSandbox(t)
	img := imageOf(t, []ent{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/su", body: "x", mode: 0o4755},
		{name: "bin/wall", body: "x", mode: 0o2755},
		{name: "shared/", typ: tar.TypeDir, mode: 0o2775},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "bin/plain", body: "x", mode: 0o755},
	})
	var st UnpackStats
	if err := Unpack(t.Context(), img, sb.root, UnpackOptions{Stats: &st}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"bin/su", "bin/wall", "shared"}; !equal(st.Stripped, want) {
		t.Errorf("Stripped = %v, want %v", st.Stripped, want)
	}
	modes := map[string]fs.FileMode{
		"bin/su": 0o755, "bin/wall": 0o755, "shared": fs.ModeDir | 0o775,
		"tmp": fs.ModeDir | fs.ModeSticky | 0o777, "bin/plain": 0o755,
	}
	for p, want := range modes {
		fi, err := os.Lstat(filepath.Join(sb.root, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), want)
		}
	}
	if st.Layers != 1 || st.Entries != 6 || st.Bytes == 0 {
		t.Errorf("stats %+v", st)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestUnpackWhiteouts(t *testing.T) {
	sb := newSandbox(t)
	img := imageOf(t,
		[]ent{file("a/gone", "1"), file("a/keep", "2"), file("d/old", "3"), file("d/sub/old2", "4"), file("e/old", "5"),
			symlink("lnk", "a"), file("x/y/z", "6")},
		[]ent{
			file("a/.wh.gone", ""),
			dir("d/"), file("d/.wh..wh..opq", ""), file("d/new", "n"), file("d/sub/new2", "n2"),
			file("e/new", "n3"), file("e/.wh..wh..opq", ""), // marker after this layer's entry
			file("lnk/.wh.keep", ""), // whiteout through a link from a lower layer
			file(".wh.x", ""),
		},
	)
	if err := Unpack(t.Context(), img, sb.root, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a/gone", "a/keep", "d/old", "d/sub/old2", "e/old", "x", "a/.wh.gone", "d/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(sb.root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there (%v)", p, err)
		}
	}
	for _, p := range []string{"d/new", "d/sub/new2", "e/new", "lnk"} {
		if _, err := os.Lstat(filepath.Join(sb.root, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	sb.check(t)
}

func TestUnpackReplaces(t *testing.T) {
	sb := newSandbox(t)
	img := imageOf(t,
		[]ent{dir("d/"), file("d/x", "x"), file("file", "old"), file("h1", "shared"), hardlink("h2", "h1")},
		[]ent{file("d", "now a file"), dir("file/"), file("h1", "new")},
	)
	if err := Unpack(t.Context(), img, sb.root, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(sb.root, "d")); string(b) != "now a file" {
		t.Errorf("d = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(sb.root, "file")); err != nil || !fi.IsDir() {
		t.Errorf("file: %v %v, want a directory", fi, err)
	}
	// Rewriting h1 must not write through the hard link into h2.
	if b, _ := os.ReadFile(filepath.Join(sb.root, "h2")); string(b) != "shared" {
		t.Errorf("h2 = %q, want the old content", b)
	}
}

func TestUnpackChown(t *testing.T) {
	requireRoot(t)
	sb := newSandbox(t)
	img := imageOf(t, []ent{
		{name: "home/user/file", body: "x", uid: 1000, gid: 1000},
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/link", typ: tar.TypeSymlink, link: "/nowhere", uid: 7, gid: 8},
		{name: "rootfile", body: "r"},
	})
	const base = 100000
	if err := Unpack(t.Context(), img, sb.root, UnpackOptions{Chown: ShiftIDs(base, base+1, 65536)}); err != nil {
		t.Fatal(err)
	}
	owners := map[string][2]uint32{
		".":              {base, base + 1},
		"home":           {base, base + 1}, // implicit parent: the image's root
		"home/user":      {base, base + 1},
		"home/user/file": {base + 1000, base + 1 + 1000},
		"etc":            {base, base + 1},
		"etc/link":       {base + 7, base + 1 + 8}, // the link itself, not /nowhere
		"rootfile":       {base, base + 1},
	}
	for p, want := range owners {
		fi, err := os.Lstat(filepath.Join(sb.root, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if [2]uint32{st.Uid, st.Gid} != want {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if fi, _ := os.Lstat(filepath.Join(sb.root, "home")); fi.Mode().Perm() != 0o755 {
		t.Errorf("implicit dir mode %v", fi.Mode())
	}
}

// lyingLayer claims a digest its content does not have.
type lyingLayer struct{ v1.Layer }

func (lyingLayer) Digest() (v1.Hash, error) {
	return v1.NewHash("sha256:" + strings.Repeat("ab", 32))
}

func TestUnpackVerifiesDigest(t *testing.T) {
	l := lyingLayer{imagetest.Layer(t, tarBytes(t, file("a", "a")))}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	err = Unpack(t.Context(), img, t.TempDir(), UnpackOptions{})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
}

func TestUnpackCompressions(t *testing.T) {
	raw := tarBytes(t, file("etc/hostname", "zstd\n"))
	for name, opts := range map[string][]tarball.LayerOption{
		"gzip": nil,
		"zstd": {tarball.WithCompression(compression.ZStd)},
	} {
		t.Run(name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, imagetest.Layer(t, raw, opts...))
			if err != nil {
				t.Fatal(err)
			}
			dest := t.TempDir()
			var seen []int64
			p := ProgressFunc(func(_ v1.Hash, done, total int64) { seen = append(seen, done, total) })
			if err := Unpack(t.Context(), img, dest, UnpackOptions{Progress: p}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dest, "etc/hostname")); string(b) != "zstd\n" {
				t.Errorf("content %q", b)
			}
			if n := len(seen); n < 4 || seen[n-2] != seen[n-1] || seen[n-1] <= 0 {
				t.Errorf("progress %v does not end with done == total", seen)
			}
		})
	}
}

func TestUnpackCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Unpack(ctx, imageOf(t, []ent{file("a", "a")}), t.TempDir(), UnpackOptions{})
	if err == nil {
		t.Fatal("Unpack with a canceled context succeeded")
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"a/b": "a/b", "./a//b/": "a/b", "./": ".", "a/./b": "a/b", "": ".",
	} {
		if got, err := cleanPath(in); err != nil || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/a", "..", "a/../b", "a/..", "a\x00b"} {
		if _, err := cleanPath(in); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("cleanPath(%q) error %v, want ErrUnsafePath", in, err)
		}
	}
}
