// Package image keeps OCI images on a node without Docker: a
// content-addressed store (an OCI image layout) filled by packing a
// directory, loading OCI layouts and docker-archive tarballs, or pulling
// from a registry; and Unpack, which applies an image's layers into a
// rootfs through os.Root so that no entry can reach outside it.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Store is a content-addressed image store: an OCI image layout in
// ROOT/images whose index.json maps names (the
// org.opencontainers.image.ref.name annotation) to manifest digests.
// Writers in any process serialize on ROOT/images.lock; readers need no
// lock because blobs are renamed into place and index.json is replaced
// atomically. A Store is safe for concurrent use.
type Store struct {
	dir  string // ROOT/images
	lock string // ROOT/images.lock
	tmp  string // ROOT/tmp, for Pack's layer files
}

// Entry describes one name in the store.
type Entry struct {
	Ref
	Size    int64     `json:"size"`    // bytes of manifest, config and layers as stored (compressed)
	Created time.Time `json:"created"` // from the image config; zero if unknown
}

const (
	ociLayoutFile = `{"imageLayoutVersion":"1.0.0"}`
	blobAlgorithm = "sha256"
)

// Open opens the store under root, creating it if needed.
func Open(ctx context.Context, root string) (*Store, error) {
	s := &Store{
		dir:  filepath.Join(root, "images"),
		lock: filepath.Join(root, "images.lock"),
		tmp:  filepath.Join(root, "tmp"),
	}
	for _, d := range []string{filepath.Join(s.dir, "blobs", blobAlgorithm), s.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(s.dir, "oci-layout")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(s.dir, "oci-layout"), []byte(ociLayoutFile)); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, fs.ErrNotExist) {
		if err := s.writeIndex(&v1.IndexManifest{}); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	return s, nil
}

// Dir is the OCI image layout directory that holds the store.
func (s *Store) Dir() string { return s.dir }

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// lockWrite takes the store's exclusive lock, waiting until ctx is done.
func (s *Store) lockWrite(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(s.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock image store: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock image store: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock image store: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Store) readIndex() (*v1.IndexManifest, error) {
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	m, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	return m, nil
}

func (s *Store) writeIndex(m *v1.IndexManifest) error {
	m.SchemaVersion = 2
	m.MediaType = types.OCIImageIndex
	if m.Manifests == nil {
		m.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	if err := writeFileAtomic(s.indexPath(), b); err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return nil
}

// writeFileAtomic replaces name with data: temp file, fsync, rename.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-"+filepath.Base(name)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// writeBlob copies rc into the blob h, verifying digest and size (size < 0:
// unknown). A blob already present is not written again.
func (s *Store) writeBlob(ctx context.Context, h v1.Hash, size int64, rc io.ReadCloser, p Progress) error {
	defer rc.Close()
	if h.Algorithm != blobAlgorithm {
		return fmt.Errorf("write blob %s: unsupported digest algorithm", h)
	}
	final := s.blobPath(h)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size) {
		p.Update(h, fi.Size(), fi.Size())
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(final), ".tmp-"+h.Hex+"-*")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	p.Update(h, 0, size)
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, sum), &meter{ctx: ctx, r: rc, p: p, blob: h, total: size})
	if err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.Hex {
		return fmt.Errorf("write blob %s: %w: content is sha256:%s", h, ErrDigestMismatch, got)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("write blob %s: %w: %d bytes, descriptor says %d", h, ErrDigestMismatch, n, size)
	}
	p.Update(h, n, n)
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	return nil
}

// writeImage copies img's layers, config and manifest into the blob store
// and returns the descriptor for the index. The caller holds the lock.
func (s *Store) writeImage(ctx context.Context, img v1.Image, p Progress) (v1.Descriptor, error) {
	p = progressOrNop(p)
	m, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read manifest: %w", err)
	}
	for _, ld := range m.Layers {
		layer, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		if err := s.writeBlob(ctx, ld.Digest, ld.Size, rc, p); err != nil {
			return v1.Descriptor{}, err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read config: %w", err)
	}
	if err := s.writeBlob(ctx, m.Config.Digest, int64(len(cfg)), io.NopCloser(bytes.NewReader(cfg)), noProgress{}); err != nil {
		return v1.Descriptor{}, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read manifest: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("manifest digest: %w", err)
	}
	if err := s.writeBlob(ctx, d, int64(len(raw)), io.NopCloser(bytes.NewReader(raw)), noProgress{}); err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("manifest media type: %w", err)
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: d}, nil
}

// setRefs points each ref at its descriptor in index.json, replacing any
// entry with the same name. The caller holds the lock.
func (s *Store) setRefs(refs []Ref, descs []v1.Descriptor) error {
	m, err := s.readIndex()
	if err != nil {
		return err
	}
	keys := map[string]bool{}
	for _, r := range refs {
		keys[r.key()] = true
	}
	m.Manifests = slices.DeleteFunc(m.Manifests, func(d v1.Descriptor) bool {
		return keys[d.Annotations[refNameAnnotation]]
	})
	for i, r := range refs {
		d := descs[i]
		d.Annotations = map[string]string{refNameAnnotation: r.key()}
		m.Manifests = append(m.Manifests, d)
	}
	return s.writeIndex(m)
}

// Resolve returns the image ref names and its manifest digest. Store names
// (NAME[:TAG], NAME@DIGEST, a registry reference that was pulled, or a bare
// sha256:… digest) are looked up in the store; oci-layout:DIR[:TAG] and
// docker-archive:FILE are read in place without being stored.
func (s *Store) Resolve(ctx context.Context, ref string) (v1.Image, v1.Hash, error) {
	src, err := parseRef(ref)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	var img v1.Image
	switch src.kind {
	case fromLayout, fromArchive:
		imgs, err := readSource(ctx, src)
		if err != nil {
			return nil, v1.Hash{}, fmt.Errorf("resolve %s: %w", ref, err)
		}
		if len(imgs) != 1 {
			return nil, v1.Hash{}, fmt.Errorf("resolve %s: %w: %d images, name one with :TAG", ref, ErrNotFound, len(imgs))
		}
		img = imgs[0].img
	default:
		m, err := s.readIndex()
		if err != nil {
			return nil, v1.Hash{}, err
		}
		i := slices.IndexFunc(m.Manifests, func(d v1.Descriptor) bool {
			return src.matches(d.Annotations[refNameAnnotation], d.Digest)
		})
		if i < 0 {
			return nil, v1.Hash{}, fmt.Errorf("resolve %s: %w", ref, ErrNotFound)
		}
		if img, err = s.image(m.Manifests[i].Digest); err != nil {
			return nil, v1.Hash{}, fmt.Errorf("resolve %s: %w", ref, err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return img, d, nil
}

// image opens the stored image with manifest digest d and checks that the
// manifest on disk still hashes to d.
func (s *Store) image(d v1.Hash) (v1.Image, error) {
	img, err := layout.Path(s.dir).Image(d)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("manifest %s: %w", d, ErrNotFound)
		}
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	got, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	if got != d {
		return nil, fmt.Errorf("manifest %s: %w: content is %s", d, ErrDigestMismatch, got)
	}
	return img, nil
}

// List returns every name in the store, sorted by name and tag.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	m, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range m.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := parseKey(d.Annotations[refNameAnnotation])
		if err != nil {
			continue // not ours: an index entry another tool wrote
		}
		r.Digest = d.Digest
		e := Entry{Ref: r, Size: d.Size}
		if img, err := s.image(d.Digest); err == nil {
			if mf, err := img.Manifest(); err == nil {
				e.Size += mf.Config.Size
				for _, l := range mf.Layers {
					e.Size += l.Size
				}
			}
			if cf, err := img.ConfigFile(); err == nil {
				e.Created = cf.Created.Time
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Ref.String(), b.Ref.String())
	})
	return out, nil
}

// Remove deletes the names ref matches (a bare sha256:… digest matches every
// name of that image) and then every blob no remaining name needs.
func (s *Store) Remove(ctx context.Context, ref string) error {
	src, err := parseRef(ref)
	if err != nil {
		return err
	}
	if src.kind == fromLayout || src.kind == fromArchive {
		return fmt.Errorf("remove %s: %w: not a store name", ref, ErrInvalidRef)
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.readIndex()
	if err != nil {
		return err
	}
	n := len(m.Manifests)
	m.Manifests = slices.DeleteFunc(m.Manifests, func(d v1.Descriptor) bool {
		return src.matches(d.Annotations[refNameAnnotation], d.Digest)
	})
	if len(m.Manifests) == n {
		return fmt.Errorf("remove %s: %w", ref, ErrNotFound)
	}
	if err := s.writeIndex(m); err != nil {
		return err
	}
	return s.collect(ctx, m)
}

// collect deletes blobs that no manifest in m references, and temporary
// files left by interrupted writes. The caller holds the lock.
func (s *Store) collect(ctx context.Context, m *v1.IndexManifest) error {
	keep := map[string]bool{}
	for _, d := range m.Manifests {
		keep[d.Digest.Hex] = true
		img, err := s.image(d.Digest)
		if err != nil {
			return fmt.Errorf("collect garbage: %w", err) // never delete what we can't account for
		}
		mf, err := img.Manifest()
		if err != nil {
			return fmt.Errorf("collect garbage: manifest %s: %w", d.Digest, err)
		}
		keep[mf.Config.Digest.Hex] = true
		for _, l := range mf.Layers {
			keep[l.Digest.Hex] = true
		}
	}
	dir := filepath.Join(s.dir, "blobs", blobAlgorithm)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("collect garbage: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("collect garbage: %w", err)
			}
		}
	}
	return nil
}
