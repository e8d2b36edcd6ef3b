package sign

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxPayload caps one signature payload read from a registry.
const maxPayload = 1 << 20

// SignatureTag is the tag cosign stores digest's signatures under:
// "sha256-HEX.sig".
func SignatureTag(digest v1.Hash) string { return digest.Algorithm + "-" + digest.Hex + ".sig" }

// Resolve resolves ref to its manifest digest, once: a tag is looked up in
// the registry, a digest reference is returned as is.
func Resolve(ctx context.Context, ref name.Reference, opts ...remote.Option) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, append(opts, remote.WithContext(ctx))...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolve %s: %w", ref, err)
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// Sign signs the image ref points to with key and pushes the signature
// next to it, keeping signatures already there. A tag is resolved once;
// the signature covers the digest, which Sign returns.
func Sign(ctx context.Context, ref name.Reference, key crypto.Signer, opts ...remote.Option) (name.Digest, error) {
	opts = append(opts, remote.WithContext(ctx))
	d, err := Resolve(ctx, ref, opts...)
	if err != nil {
		return name.Digest{}, err
	}
	digest, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: %w", d, err)
	}
	pl, err := Payload(d.Context().Name(), digest)
	if err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: %w", d, err)
	}
	sig, err := SignPayload(key, pl)
	if err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: %w", d, err)
	}
	tag := d.Context().Tag(SignatureTag(digest))
	base, err := remote.Image(tag, opts...)
	if isNotFound(err) {
		base = mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	} else if err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: read %s: %w", d, tag, err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(pl, PayloadMediaType),
		Annotations: map[string]string{SignatureAnno: encodeSig(sig)},
	})
	if err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: %w", d, err)
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		return name.Digest{}, fmt.Errorf("sign %s: push %s: %w", d, tag, err)
	}
	return d, nil
}

// Signatures fetches the signatures stored for digest in repo. An image
// without a signature tag has none (ErrNoSignature).
func Signatures(ctx context.Context, repo name.Repository, digest v1.Hash, opts ...remote.Option) ([]Signature, error) {
	opts = append(opts, remote.WithContext(ctx))
	tag := repo.Tag(SignatureTag(digest))
	img, err := remote.Image(tag, opts...)
	if isNotFound(err) {
		return nil, fmt.Errorf("%w for %s in %s", ErrNoSignature, digest, repo)
	}
	if err != nil {
		return nil, fmt.Errorf("read signatures %s: %w", tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("read signatures %s: %w", tag, err)
	}
	var out []Signature
	for _, l := range m.Layers {
		if l.MediaType != PayloadMediaType || l.Annotations[SignatureAnno] == "" || l.Size > maxPayload {
			continue
		}
		sig, err := decodeSig(l.Annotations[SignatureAnno])
		if err != nil {
			continue
		}
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			return nil, fmt.Errorf("read signatures %s: %w", tag, err)
		}
		pl, err := readVerified(layer, l.Digest)
		if err != nil {
			return nil, fmt.Errorf("read signatures %s: payload %s: %w", tag, l.Digest, err)
		}
		out = append(out, Signature{Payload: pl, Signature: sig})
	}
	return out, nil
}

// readVerified reads a payload blob and checks it against its digest, so
// that a registry cannot swap the payload under a signature's descriptor.
func readVerified(l v1.Layer, want v1.Hash) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	if err != nil {
		return nil, err
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if got != want {
		return nil, fmt.Errorf("digest %s, descriptor says %s", got, want)
	}
	return b, nil
}

// Result is a successful verification.
type Result struct {
	// Digest is the verified image, the one to run.
	Digest name.Digest
	// Key is the key that signed it.
	Key Key
}

// Verify resolves ref once to a digest and checks that one of keys signed
// that digest. Run the returned digest, never ref's tag again: the tag may
// have moved since.
func Verify(ctx context.Context, ref name.Reference, keys []Key, opts ...remote.Option) (Result, error) {
	d, err := Resolve(ctx, ref, opts...)
	if err != nil {
		return Result{}, err
	}
	digest, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return Result{}, fmt.Errorf("verify %s: %w", d, err)
	}
	sigs, err := Signatures(ctx, d.Context(), digest, opts...)
	if err != nil {
		return Result{Digest: d}, fmt.Errorf("verify %s: %w", d, err)
	}
	k, err := VerifySignatures(digest, sigs, keys)
	if err != nil {
		return Result{Digest: d}, fmt.Errorf("verify %s: %w", d, err)
	}
	return Result{Digest: d, Key: k}, nil
}

func isNotFound(err error) bool {
	te, ok := errors.AsType[*transport.Error](err)
	return ok && te.StatusCode == http.StatusNotFound
}
