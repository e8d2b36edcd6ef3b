package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// containerdNameAnnotation is the full image name containerd and
// BuildKit write next to a bare tag in ref.name.
const containerdNameAnnotation = "io.containerd.image.name"

// namedImage is an image read from a layout or archive with the store name
// it will get. ref.Tag is empty when it is stored by digest only.
type namedImage struct {
	ref Ref
	img v1.Image
}

// Load copies the images in an OCI image layout directory
// (oci-layout:DIR[:TAG], or a bare directory) or a docker-archive tarball
// (docker-archive:FILE, or a bare file) into the store and returns the
// names it stored. Images are named from their ref.name annotations or
// RepoTags; an image without a name is stored as BASENAME@DIGEST. An image
// index is resolved to its linux/GOARCH image.
func (s *Store) Load(ctx context.Context, path string) ([]Ref, error) {
	src, err := loadSource(path)
	if err != nil {
		return nil, err
	}
	imgs, err := readSource(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("load %s: %w", path, ErrNotFound)
	}
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	refs := make([]Ref, 0, len(imgs))
	descs := make([]v1.Descriptor, 0, len(imgs))
	for _, ni := range imgs {
		desc, err := s.writeImage(ctx, ni.img, nil)
		if err != nil {
			return nil, fmt.Errorf("load %s: %s: %w", path, ni.ref.Name, err)
		}
		r := ni.ref
		r.Digest = desc.Digest
		refs = append(refs, r)
		descs = append(descs, desc)
	}
	if err := s.setRefs(refs, descs); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return refs, nil
}

// loadSource parses a Load argument: a prefixed reference or a bare path.
func loadSource(path string) (source, error) {
	if strings.HasPrefix(path, LayoutPrefix) || strings.HasPrefix(path, ArchivePrefix) {
		return parseRef(path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return source{}, fmt.Errorf("load %s: %w", path, err)
	}
	if fi.IsDir() {
		return source{kind: fromLayout, path: path}, nil
	}
	return source{kind: fromArchive, path: path}, nil
}

// readSource opens the images of a layout or archive source.
func readSource(ctx context.Context, src source) ([]namedImage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch src.kind {
	case fromLayout:
		return readLayout(src.path, src.tag)
	case fromArchive:
		return readArchive(src.path)
	}
	return nil, fmt.Errorf("%w: not a layout or archive", ErrInvalidRef)
}

// readLayout lists the images of an OCI layout; with tag, only those whose
// ref.name is tag or ends in :tag.
func readLayout(dir, tag string) ([]namedImage, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("oci layout %s: %w", dir, ErrNotFound)
		}
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("oci layout %s: %w", dir, err)
	}
	var out []namedImage
	for _, d := range im.Manifests {
		refName := d.Annotations[refNameAnnotation]
		if tag != "" && refName != tag && !strings.HasSuffix(refName, ":"+tag) {
			continue
		}
		img, err := layoutImage(idx, d)
		if err != nil {
			return nil, fmt.Errorf("oci layout %s: %w", dir, err)
		}
		if img == nil {
			continue // neither an image nor an index
		}
		out = append(out, namedImage{ref: layoutName(dir, d), img: img})
	}
	if tag != "" && len(out) == 0 {
		return nil, fmt.Errorf("oci layout %s: tag %s: %w", dir, tag, ErrNotFound)
	}
	return out, nil
}

// layoutImage opens the image d names, resolving an index to this
// machine's platform. It returns nil for other artifacts.
func layoutImage(idx v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	switch {
	case d.MediaType.IsImage():
		return idx.Image(d.Digest)
	case d.MediaType.IsIndex():
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return platformImage(child, defaultPlatform())
	}
	return nil, nil
}

// defaultPlatform is the platform images are resolved to.
func defaultPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// platformImage picks the image for p from an index.
func platformImage(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%w: no image for platform %s/%s", ErrNotFound, p.OS, p.Architecture)
}

// layoutName names an image from a layout: the containerd name annotation,
// a full reference in ref.name, or DIR's base name with ref.name as tag.
func layoutName(dir string, d v1.Descriptor) Ref {
	for _, a := range []string{containerdNameAnnotation, refNameAnnotation} {
		if r, ok := fullName(d.Annotations[a]); ok {
			return r
		}
	}
	r := Ref{Name: nameFromPath(dir)}
	if t := d.Annotations[refNameAnnotation]; tagRE.MatchString(t) {
		r.Tag = t
	}
	if r.Tag == "" {
		r.Digest = d.Digest
	}
	return r
}

// fullName parses s as NAME:TAG or NAME@DIGEST; a bare word is a tag, not
// a name, so it is refused.
func fullName(s string) (Ref, bool) {
	if !strings.ContainsAny(s, ":/@") {
		return Ref{}, false
	}
	r, err := parseKey(s)
	return r, err == nil
}

// readArchive lists the images of a docker-archive tarball (docker save),
// one per RepoTag.
func readArchive(file string) ([]namedImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("docker archive %s: %w", file, ErrNotFound)
		}
		return nil, fmt.Errorf("docker archive %s: %w", file, err)
	}
	var out []namedImage
	for _, d := range m {
		if len(d.RepoTags) == 0 {
			if len(m) != 1 {
				return nil, fmt.Errorf("docker archive %s: %w: untagged image among %d", file, ErrInvalidRef, len(m))
			}
			img, err := tarball.Image(opener, nil)
			if err != nil {
				return nil, fmt.Errorf("docker archive %s: %w", file, err)
			}
			d, err := img.Digest()
			if err != nil {
				return nil, fmt.Errorf("docker archive %s: %w", file, err)
			}
			out = append(out, namedImage{ref: Ref{Name: nameFromPath(file), Digest: d}, img: img})
			continue
		}
		for _, rt := range d.RepoTags {
			r, ok := fullName(rt)
			if !ok || r.Tag == "" {
				return nil, fmt.Errorf("docker archive %s: %w: repo tag %q", file, ErrInvalidRef, rt)
			}
			t, err := name.NewTag(rt)
			if err != nil {
				return nil, fmt.Errorf("docker archive %s: %w: repo tag %q: %v", file, ErrInvalidRef, rt, err)
			}
			img, err := tarball.Image(opener, &t)
			if err != nil {
				return nil, fmt.Errorf("docker archive %s: %s: %w", file, rt, err)
			}
			out = append(out, namedImage{ref: r, img: img})
		}
	}
	return out, nil
}
