package image

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PullOptions configures Pull.
type PullOptions struct {
	// Platform picks the image from a multi-platform index; zero means
	// linux on this machine's architecture.
	Platform v1.Platform
	// Keychain supplies registry credentials; nil pulls anonymously.
	Keychain authn.Keychain
	// Transport carries the HTTP requests; nil uses http.DefaultTransport.
	Transport http.RoundTripper
	// Insecure allows plain HTTP to a registry that is not on loopback
	// (loopback and localhost registries always use HTTP).
	Insecure bool
	// Progress, if set, sees each layer as it is downloaded.
	Progress Progress
}

// Pull downloads ref from its registry into the store. A tag is resolved
// to a manifest digest once, and everything after that is fetched by
// digest; the digest is what the store records under the tag. An index is
// resolved to the image for opts.Platform. The stored name is the
// canonical repository (registry host included) with ref's tag or digest.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (Ref, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return Ref{}, fmt.Errorf("pull %s: %w: %v", ref, ErrInvalidRef, err)
	}
	plat := opts.Platform
	if plat.OS == "" {
		plat = defaultPlatform()
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(plat)}
	if opts.Keychain != nil {
		ropts = append(ropts, remote.WithAuthFromKeychain(opts.Keychain))
	}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return Ref{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return Ref{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	out := Ref{Name: r.Context().Name()}
	switch t := r.(type) {
	case name.Tag:
		out.Tag = t.TagStr()
	case name.Digest:
		if out.Digest, err = v1.NewHash(t.DigestStr()); err != nil {
			return Ref{}, fmt.Errorf("pull %s: %w: %v", ref, ErrInvalidRef, err)
		}
	}
	key := out // NAME@DIGEST keeps the digest the user asked for
	unlock, err := s.lockWrite(ctx)
	if err != nil {
		return Ref{}, err
	}
	defer unlock()
	d, err := s.writeImage(ctx, img, opts.Progress)
	if err != nil {
		return Ref{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := s.setRefs([]Ref{key}, []v1.Descriptor{d}); err != nil {
		return Ref{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	out.Digest = d.Digest
	return out, nil
}
