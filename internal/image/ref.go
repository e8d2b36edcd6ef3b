package image

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Reference prefixes for images that are read from local files rather
// than from the store or a registry.
const (
	LayoutPrefix  = "oci-layout:"     // oci-layout:DIR[:TAG]
	ArchivePrefix = "docker-archive:" // docker-archive:FILE
)

// DefaultTag is the tag assumed when a reference names neither a tag nor a
// digest.
const DefaultTag = "latest"

// refNameAnnotation is the OCI annotation that names an index entry.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Ref names an image the store holds: a repository name with a tag, or
// with only a digest, and the digest of the image manifest.
type Ref struct {
	Name   string  `json:"name"`
	Tag    string  `json:"tag,omitempty"`
	Digest v1.Hash `json:"digest"`
}

// String is NAME:TAG, or NAME@DIGEST for an image stored without a tag.
func (r Ref) String() string {
	if r.Tag != "" {
		return r.Name + ":" + r.Tag
	}
	return r.Name + "@" + r.Digest.String()
}

// key is what the store writes into the ref.name annotation.
func (r Ref) key() string { return r.String() }

// sourceKind says where a reference points.
type sourceKind int

const (
	fromStore    sourceKind = iota // NAME[:TAG] or NAME@DIGEST
	fromDigest                     // sha256:HEX, any name in the store
	fromLayout                     // oci-layout:DIR[:TAG]
	fromArchive                    // docker-archive:FILE
	fromRegistry                   // HOST/REPO[:TAG|@DIGEST]
)

// source is a parsed image reference.
type source struct {
	kind   sourceKind
	name   string  // repository; for registry refs the canonical repository
	tag    string  // "" when a digest is given
	digest v1.Hash // zero unless the reference pins one
	path   string  // layout directory or archive file
}

// matches reports whether an index entry named key with manifest digest d
// is what src asks for.
func (src source) matches(key string, d v1.Hash) bool {
	switch src.kind {
	case fromDigest:
		return d == src.digest
	case fromStore, fromRegistry:
		r, err := parseKey(key)
		if err != nil || r.Name != src.name {
			return false
		}
		if src.tag != "" {
			return r.Tag == src.tag
		}
		// NAME@DIGEST matches the entry stored under that exact key (the
		// digest of an index that was resolved to one platform) and any
		// entry of NAME whose manifest has that digest.
		return key == src.name+"@"+src.digest.String() || d == src.digest
	}
	return false
}

var (
	nameComponent = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	localNameRE   = regexp.MustCompile(`^` + nameComponent + `(?:/` + nameComponent + `)*$`)
	tagRE         = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// parseRef parses any reference the package accepts.
func parseRef(s string) (source, error) {
	bad := func(why string) (source, error) {
		return source{}, fmt.Errorf("%w %q: %s", ErrInvalidRef, s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.HasPrefix(s, LayoutPrefix):
		dir, tag := splitLayoutTag(strings.TrimPrefix(s, LayoutPrefix))
		if dir == "" {
			return bad("no directory")
		}
		return source{kind: fromLayout, path: dir, tag: tag}, nil
	case strings.HasPrefix(s, ArchivePrefix):
		file := strings.TrimPrefix(s, ArchivePrefix)
		if file == "" {
			return bad("no file")
		}
		return source{kind: fromArchive, path: file}, nil
	case strings.HasPrefix(s, "sha256:"):
		h, err := v1.NewHash(s)
		if err != nil {
			return bad(err.Error())
		}
		return source{kind: fromDigest, digest: h}, nil
	case isRegistryRef(s):
		ref, err := name.ParseReference(s)
		if err != nil {
			return source{}, fmt.Errorf("%w %q: %v", ErrInvalidRef, s, err)
		}
		src := source{kind: fromRegistry, name: ref.Context().Name()}
		switch r := ref.(type) {
		case name.Tag:
			src.tag = r.TagStr()
		case name.Digest:
			if src.digest, err = v1.NewHash(r.DigestStr()); err != nil {
				return bad(err.Error())
			}
		}
		return src, nil
	}
	src := source{kind: fromStore}
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		h, err := v1.NewHash(rest[i+1:])
		if err != nil {
			return bad(err.Error())
		}
		src.digest, rest = h, rest[:i]
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		src.tag, rest = rest[i+1:], rest[:i]
		if !tagRE.MatchString(src.tag) {
			return bad("invalid tag")
		}
	} else {
		src.tag = DefaultTag
	}
	if !localNameRE.MatchString(rest) || len(rest) > 255 {
		return bad("invalid name: lowercase letters, digits and . _ - / separators")
	}
	src.name = rest
	return src, nil
}

// parseKey parses a ref.name annotation written by the store.
func parseKey(key string) (Ref, error) {
	src, err := parseRef(key)
	if err != nil {
		return Ref{}, err
	}
	if src.kind != fromStore && src.kind != fromRegistry {
		return Ref{}, fmt.Errorf("%w %q: not a store name", ErrInvalidRef, key)
	}
	return Ref{Name: src.name, Tag: src.tag, Digest: src.digest}, nil
}

// isRegistryRef reports whether s starts with a registry host: a first
// path component with a dot or a port, or localhost.
func isRegistryRef(s string) bool {
	host, _, ok := strings.Cut(s, "/")
	if !ok {
		return false
	}
	return strings.ContainsAny(host, ".:") || host == "localhost"
}

// splitLayoutTag splits DIR[:TAG]; a colon belongs to DIR unless what
// follows it is a valid tag.
func splitLayoutTag(s string) (dir, tag string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || !tagRE.MatchString(s[i+1:]) {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// nameFromPath makes a store name from a file or directory name, for
// images that carry no name of their own.
func nameFromPath(p string) string {
	base := strings.ToLower(filepath.Base(filepath.Clean(p)))
	for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
		base = strings.TrimSuffix(base, ext)
	}
	var b strings.Builder
	dash := false
	for _, r := range base {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	n := strings.TrimRight(b.String(), "-")
	if n == "" {
		return "image"
	}
	return n
}
