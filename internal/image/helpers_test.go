package image

import (
	"archive/tar"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"rung.dev/rung/internal/image/imagetest"
)

// ent is one hand-made tar entry.
type ent struct {
	name string
	typ  byte // default tar.TypeReg
	body string
	link string
	mode int64 // default 0644, 0755 for directories
	uid  int
	gid  int
}

func file(name, body string) ent      { return ent{name: name, body: body} }
func dir(name string) ent             { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, to string) ent     { return ent{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) ent    { return ent{name: name, typ: tar.TypeLink, link: to} }
func special(name string, t byte) ent { return ent{name: name, typ: t} }

// tarBytes writes entries as a tar stream without any checks of its own.
func tarBytes(t testing.TB, ents ...ent) []byte {
	t.Helper()
	es := make([]imagetest.Entry, len(ents))
	for i, e := range ents {
		es[i] = imagetest.Entry{Name: e.name, Type: e.typ, Body: e.body, Link: e.link, Mode: e.mode, UID: e.uid, GID: e.gid}
	}
	return imagetest.Tar(t, es...)
}

// imageOf stacks layers, each given as its entries, into an image.
func imageOf(t testing.TB, layers ...[]ent) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, es := range layers {
		ls = append(ls, imagetest.Layer(t, tarBytes(t, es...)))
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// sandbox is a temp dir holding the unpack destination "root" and a
// sibling "outside" with one sentinel file, which must never change.
type sandbox struct {
	base, root, outside string
}

const sentinel = "sentinel"

func newSandbox(t testing.TB) sandbox {
	t.Helper()
	base := t.TempDir()
	s := sandbox{base: base, root: filepath.Join(base, "root"), outside: filepath.Join(base, "outside")}
	if err := os.Mkdir(s.outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.outside, sentinel), []byte(sentinel), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// check fails if anything but root and outside/sentinel exists in base.
func (s sandbox) check(t testing.TB) {
	t.Helper()
	names := func(d string) []string {
		es, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	if got := names(s.base); !slices.Equal(got, []string{"outside", "root"}) && !slices.Equal(got, []string{"outside"}) {
		t.Fatalf("written beside the root: %v", got)
	}
	if got := names(s.outside); !slices.Equal(got, []string{sentinel}) {
		t.Fatalf("written outside the root: %v", got)
	}
	fi, err := os.Lstat(filepath.Join(s.outside, sentinel))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(sentinel)) {
		t.Fatalf("sentinel changed: %v %v", fi, err)
	}
}

// fileSum hashes a host file, to prove it did not change.
func fileSum(t testing.TB, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: changes file ownership")
	}
}
