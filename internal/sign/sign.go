// Package sign signs and verifies container images in cosign's format,
// offline, with a key pair: no transparency log, no certificate authority.
//
// The format is cosign's "simple signing" one, which every cosign since
// v1 writes and verifies with `cosign sign --key` / `cosign verify --key`:
// the signature of image REPO@sha256:HEX lives in the same repository
// under the tag sha256-HEX.sig, an OCI image whose every layer is one
// signature: the layer is the JSON payload
//
//	{"critical":{"identity":{"docker-reference":REPO},
//	             "image":{"docker-manifest-digest":"sha256:HEX"},
//	             "type":"cosign container image signature"},"optional":null}
//
// of media type application/vnd.dev.cosign.simplesigning.v1+json, and the
// layer descriptor's annotation dev.cosignproject.cosign/signature is the
// base64 ASN.1 signature of the payload's SHA-256 (ECDSA P-256 for cosign's
// own keys).
//
// Why not sigstore/cosign or sigstore-go: both are fetchable and cgo-free,
// but they bring the whole sigstore stack (Fulcio, Rekor, TUF, OIDC
// clients, protobuf bundles, several crypto and cloud-KMS modules) into
// rung's module graph to verify one ECDSA signature over one JSON
// document offline. This package needs only the standard library's crypto
// and go-containerregistry, which rung already uses; the format is small
// and stable, and the tests check it byte for byte.
//
// Not supported: cosign's encrypted private key files ("ENCRYPTED SIGSTORE
// PRIVATE KEY", scrypt + NaCl secretbox, which would need
// golang.org/x/crypto): `rung image sign` takes an unencrypted PKCS#8 or
// SEC1 PEM key, as CI secret stores hand out. Public keys are the PEM
// "PUBLIC KEY" files cosign writes (cosign.pub).
package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Errors callers can check with errors.Is.
var (
	// ErrNoSignature is returned when an image has no signature at all.
	ErrNoSignature = errors.New("no signature")
	// ErrUntrusted is returned when no signature verifies with the keys.
	ErrUntrusted = errors.New("no valid signature by a trusted key")
	// ErrKey is returned for a key file rung cannot use.
	ErrKey = errors.New("unusable key")
)

// Cosign's media type, annotation and payload type.
const (
	PayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnno    = "dev.cosignproject.cosign/signature"
	payloadType      = "cosign container image signature"
)

// Key is a trusted public key.
type Key struct {
	// Name says where the key came from (its file name).
	Name   string
	Public crypto.PublicKey
}

// ParsePublicKey parses a PEM "PUBLIC KEY" (PKIX) block: ECDSA, Ed25519 or RSA.
func ParsePublicKey(name string, data []byte) (Key, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return Key{}, fmt.Errorf("%w: %s: not a PEM PUBLIC KEY", ErrKey, name)
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s: %v", ErrKey, name, err)
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
	default:
		return Key{}, fmt.Errorf("%w: %s: %T keys are not supported", ErrKey, name, pub)
	}
	return Key{Name: name, Public: pub}, nil
}

// LoadPublicKey reads a public key file.
func LoadPublicKey(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return ParsePublicKey(path, data)
}

// ParsePrivateKey parses a PEM private key: PKCS#8 "PRIVATE KEY" or SEC1
// "EC PRIVATE KEY". Cosign's encrypted key files are refused with a hint.
func ParsePrivateKey(name string, data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: %s: not PEM", ErrKey, name)
	}
	switch b.Type {
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrKey, name, err)
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrKey, name, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %s: %T cannot sign", ErrKey, name, k)
		}
		return s, nil
	case "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		return nil, fmt.Errorf("%w: %s: cosign's encrypted key format is not supported; give an unencrypted PKCS#8 PEM key "+
			"(e.g. openssl ecparam -name prime256v1 -genkey | openssl pkcs8 -topk8 -nocrypt)", ErrKey, name)
	}
	return nil, fmt.Errorf("%w: %s: PEM block %q is not a private key", ErrKey, name, b.Type)
}

// LoadPrivateKey reads a private key file.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return ParsePrivateKey(path, data)
}

// MarshalPublicKey encodes a public key as cosign.pub does.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// payload is cosign's simple signing document.
type payload struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// Payload returns the simple signing payload for repo@digest, byte for
// byte as cosign writes it.
func Payload(repo string, digest v1.Hash) ([]byte, error) {
	var p payload
	p.Critical.Identity.DockerReference = repo
	p.Critical.Image.DockerManifestDigest = digest.String()
	p.Critical.Type = payloadType
	return json.Marshal(p)
}

// Signature is one signature as stored: the payload and the raw signature.
type Signature struct {
	Payload   []byte
	Signature []byte
}

// SignPayload signs payload with key: SHA-256, then ECDSA (ASN.1), RSA
// PKCS#1 v1.5, or Ed25519 over the payload itself.
func SignPayload(key crypto.Signer, payload []byte) ([]byte, error) {
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		return key.Sign(rand.Reader, payload, crypto.Hash(0))
	}
	sum := sha256.Sum256(payload)
	return key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

func verifyRaw(pub crypto.PublicKey, payload, sig []byte) bool {
	sum := sha256.Sum256(payload)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(k, payload, sig)
	}
	return false
}

// VerifySignatures returns the first key that signed a payload naming
// digest. It is pure: fetching the signatures is the caller's business.
// A signature by a trusted key over a payload for another digest does not
// count (a signature cannot be moved to another image).
func VerifySignatures(digest v1.Hash, sigs []Signature, keys []Key) (Key, error) {
	if len(sigs) == 0 {
		return Key{}, fmt.Errorf("%w for %s", ErrNoSignature, digest)
	}
	var reasons []string
	for i, s := range sigs {
		var p payload
		dec := json.NewDecoder(bytes.NewReader(s.Payload))
		if err := dec.Decode(&p); err != nil {
			reasons = append(reasons, fmt.Sprintf("signature %d: payload: %v", i+1, err))
			continue
		}
		if p.Critical.Type != payloadType {
			reasons = append(reasons, fmt.Sprintf("signature %d: payload type %q", i+1, p.Critical.Type))
			continue
		}
		if p.Critical.Image.DockerManifestDigest != digest.String() {
			reasons = append(reasons, fmt.Sprintf("signature %d: signs %s, not %s", i+1, p.Critical.Image.DockerManifestDigest, digest))
			continue
		}
		for _, k := range keys {
			if verifyRaw(k.Public, s.Payload, s.Signature) {
				return k, nil
			}
		}
		reasons = append(reasons, fmt.Sprintf("signature %d: not made by %s", i+1, keyNames(keys)))
	}
	return Key{}, fmt.Errorf("%w for %s: %s", ErrUntrusted, digest, strings.Join(reasons, "; "))
}

func keyNames(keys []Key) string {
	if len(keys) == 0 {
		return "any trusted key (none given)"
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	return strings.Join(names, " or ")
}

func encodeSig(sig []byte) string { return base64.StdEncoding.EncodeToString(sig) }

func decodeSig(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
