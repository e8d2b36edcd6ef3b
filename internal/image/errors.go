package image

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Error kinds. Every error from this package that reports one of these
// conditions wraps the matching sentinel; test with errors.Is.
var (
	// ErrNotFound: the reference names no image in the store or source.
	ErrNotFound = errors.New("image not found")
	// ErrInvalidRef: the reference cannot be parsed.
	ErrInvalidRef = errors.New("invalid image reference")
	// ErrUnsafePath: a layer entry or link target is absolute, contains "..",
	// or cannot be placed inside the root without escaping it.
	ErrUnsafePath = errors.New("unsafe path")
	// ErrInvalidConfig: an option of Pack (user, healthcheck, env) would make
	// an image that can't run as asked.
	ErrInvalidConfig = errors.New("invalid image config")
	// ErrUnsupported: a layer entry has a type that is neither a file,
	// directory, symlink nor hard link.
	ErrUnsupported = errors.New("unsupported entry type")
	// ErrTooLarge: a layer or the whole image exceeds the size or entry limit.
	ErrTooLarge = errors.New("image too large")
	// ErrBadOwner: an entry's uid or gid falls outside the ID map.
	ErrBadOwner = errors.New("owner outside the id map")
	// ErrDigestMismatch: content does not hash to the digest that names it.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// UnpackError is a refusal or failure while unpacking one entry of one layer.
type UnpackError struct {
	Layer v1.Hash // digest of the layer (compressed) being applied
	Path  string  // entry name as written in the layer, "" for layer-wide errors
	Err   error   // wraps one of the sentinels above, or an I/O error
}

func (e *UnpackError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("unpack layer %s: %v", e.Layer, e.Err)
	}
	return fmt.Sprintf("unpack layer %s: %q: %v", e.Layer, e.Path, e.Err)
}

func (e *UnpackError) Unwrap() error { return e.Err }
