package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FuzzUnpack feeds arbitrary bytes to Unpack as one layer and checks that
// it neither panics nor writes beside its destination, and that what it
// wrote holds no device node, fifo or setuid/setgid file.
func FuzzUnpack(f *testing.F) {
	seeds := [][]ent{
		{file("../../etc/passwd", "x")},
		{file("/abs", "x")},
		{symlink("a", "/etc"), file("a/passwd", "x")},
		{symlink("up", "../../.."), file("up/outside/sentinel", "x")},
		{symlink("o", "../outside"), file("o/new", "x"), hardlink("h", "o/sentinel")},
		{hardlink("s", "/etc/shadow")},
		{special("dev/null", tar.TypeChar)},
		{{name: "bin/su", body: "x", mode: 0o4755}},
		{dir("d/"), file("d/.wh..wh..opq", ""), file(".wh.d", "")},
		{symlink("a", "b"), symlink("b", "a"), file("a/x", "")},
		{symlink("l", "/"), dir("l/"), file("l/x", "x")},
	}
	for _, s := range seeds {
		f.Add(tarBytes(f, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newSandbox(t)
		img, err := mutate.AppendLayers(empty.Image, newRawLayer(data))
		if err != nil {
			t.Fatal(err)
		}
		opts := UnpackOptions{MaxLayerSize: 1 << 20, MaxEntries: 1000}
		if os.Geteuid() == 0 {
			opts.Chown = ShiftIDs(100000, 100000, 65536)
		}
		_ = Unpack(t.Context(), img, sb.root, opts)
		sb.check(t)
		err = filepath.WalkDir(sb.root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			m := fi.Mode()
			if m&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
				t.Errorf("%s: special file %v", p, m)
			}
			if m&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
				t.Errorf("%s: setuid/setgid kept: %v", p, m)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	})
}

// rawLayer is an uncompressed layer, so that fuzzing spends its time in
// Unpack rather than in gzip.
type rawLayer struct {
	b []byte
	h v1.Hash
}

func newRawLayer(b []byte) rawLayer {
	sum := sha256.Sum256(b)
	return rawLayer{b: b, h: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
}

func (l rawLayer) Digest() (v1.Hash, error)             { return l.h, nil }
func (l rawLayer) DiffID() (v1.Hash, error)             { return l.h, nil }
func (l rawLayer) Size() (int64, error)                 { return int64(len(l.b)), nil }
func (l rawLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
func (l rawLayer) Compressed() (io.ReadCloser, error)   { return io.NopCloser(bytes.NewReader(l.b)), nil }
func (l rawLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
