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
// base64 signature of the payload: ECDSA (ASN.1) or RSA PKCS#1 v1.5 over
// its SHA-256, or Ed25519 over the payload itself.
//
// Keys are cosign's: cosign.pub is a PEM "PUBLIC KEY"; cosign.key is a PEM
// "ENCRYPTED SIGSTORE PRIVATE KEY" ("ENCRYPTED COSIGN PRIVATE KEY" before
// cosign v2.0.1) whose bytes are go-securesystemslib's encrypted JSON
// (scrypt + NaCl secretbox) around a PKCS#8 key. Unencrypted PKCS#8, SEC1
// and PKCS#1 PEM keys work too. The password is the caller's business (a
// Password func), so that this package reads no environment or terminal.
//
// Why github.com/sigstore/sigstore and not sigstore/cosign or sigstore-go:
// sigstore/sigstore is the core cosign itself builds on. cosign builds its
// payloads with signature/payload and signs and verifies with signature's
// signers and verifiers, and its key files are go-securesystemslib's
// encryption, which cryptoutils reads and writes; so rung agrees with
// cosign by sharing its code, not by imitating it. In rung's build these
// packages add only go-securesystemslib/encrypted, x/crypto's scrypt and
// secretbox, youmark/pkcs8, x/term and protobuf-specs' common types. The
// whole tools are another matter: sigstore-go's current release (v1.4.0)
// declares go 1.27.0, newer than rung's toolchain, and cosign's module
// (v3.1.3: go 1.26.0 and 287 requirements; v2.6.5: 300) brings Rekor, TUF,
// timestamp-authority and OIDC clients and the AWS, Azure, GCP and Vault
// KMS SDKs, all to check one signature over one JSON document offline.
// The tests pin the format byte for byte and check it against a key pair
// and a signature made by cosign v2.6.5 (testdata/cosign).
package sign

import (
	"bytes"
	"crypto"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Errors callers can check with errors.Is.
var (
	// ErrNoSignature is returned when an image has no signature at all.
	ErrNoSignature = errors.New("no signature")
	// ErrUntrusted is returned when no signature verifies with the keys.
	ErrUntrusted = errors.New("no valid signature by a trusted key")
	// ErrKey is returned for a key file rung cannot use, including an
	// encrypted one whose password is missing or wrong.
	ErrKey = errors.New("unusable key")
)

// Cosign's media type and annotation.
const (
	PayloadMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnno    = "dev.cosignproject.cosign/signature"
)

// PEM block types of cosign's encrypted private keys: cosign since v2.0.1
// writes the first; older cosign wrote the second, same bytes inside.
const (
	EncryptedKeyPEM       = string(cryptoutils.EncryptedSigstorePrivateKeyPEMType)
	legacyEncryptedKeyPEM = "ENCRYPTED COSIGN PRIVATE KEY"
	// pkcs8EncryptedKeyPEM is OpenSSL's password-protected PKCS#8
	// (openssl genpkey -aes256), which cryptoutils also reads.
	pkcs8EncryptedKeyPEM = "ENCRYPTED PRIVATE KEY"
)

// Key is a trusted public key.
type Key struct {
	// Name says where the key came from (its file name).
	Name   string
	Public crypto.PublicKey
}

// ParsePublicKey parses a PEM "PUBLIC KEY" (PKIX, as cosign.pub) or
// "RSA PUBLIC KEY" block: ECDSA, Ed25519 or RSA.
func ParsePublicKey(name string, data []byte) (Key, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return Key{}, fmt.Errorf("%w: %s: not a PEM PUBLIC KEY: %v", ErrKey, name, err)
	}
	// Refuse at load time what verification could never accept, so that a
	// bad signedBy entry is reported when it is written, not at admission.
	if _, err := signature.LoadVerifier(pub, crypto.SHA256); err != nil {
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

// Password returns the password of the encrypted key file name. It is
// called only for an encrypted key; an empty password is a valid one (as
// cosign allows), so return a non-nil error, not an empty password, when
// there is none.
type Password func(name string) ([]byte, error)

// StaticPassword returns pw for any key: for tests and callers that have
// the password already.
func StaticPassword(pw []byte) Password {
	return func(string) ([]byte, error) { return pw, nil }
}

// ParsePrivateKey parses a PEM private key: cosign's encrypted key
// (decrypted with the password from pass), encrypted or plain PKCS#8,
// SEC1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY". pass may be nil when
// the key is known to be unencrypted.
func ParsePrivateKey(name string, data []byte, pass Password) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: %s: not PEM", ErrKey, name)
	}
	var pf cryptoutils.PassFunc
	encrypted := false
	switch b.Type {
	case EncryptedKeyPEM, legacyEncryptedKeyPEM, pkcs8EncryptedKeyPEM:
		encrypted = true
		if pass == nil {
			return nil, fmt.Errorf("%w: %s: the key is encrypted and no password was given", ErrKey, name)
		}
		pw, err := pass(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrKey, name, err)
		}
		// cryptoutils skips decryption for a nil password and would then
		// misreport the ciphertext as a malformed key; "" is a password.
		if pw == nil {
			pw = []byte{}
		}
		pf = cryptoutils.StaticPasswordFunc(pw)
	case string(cryptoutils.PrivateKeyPEMType), string(cryptoutils.ECPrivateKeyPEMType), string(cryptoutils.PKCS1PrivateKeyPEMType):
		// Legacy OpenSSL "Proc-Type: 4,ENCRYPTED" blocks are refused by
		// cryptoutils without a PassFunc: their cipher is broken by design.
	default:
		return nil, fmt.Errorf("%w: %s: PEM block %q is not a private key", ErrKey, name, b.Type)
	}
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(data, pf)
	if err != nil {
		if encrypted {
			return nil, fmt.Errorf("%w: %s: cannot decrypt the key with the password given (wrong password, or a damaged file): %v", ErrKey, name, err)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, name, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: %T cannot sign", ErrKey, name, k)
	}
	if _, err := signature.LoadSigner(s, crypto.SHA256); err != nil {
		return nil, fmt.Errorf("%w: %s: %T keys are not supported", ErrKey, name, k)
	}
	return s, nil
}

// LoadPrivateKey reads a private key file; pass gives the password if the
// key is encrypted.
func LoadPrivateKey(path string, pass Password) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return ParsePrivateKey(path, data, pass)
}

// MarshalPublicKey encodes a public key as cosign.pub does.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return b, nil
}

// GenerateKeyPair makes an ECDSA P-256 key pair as `cosign generate-key-pair`
// does, with the same sigstore code: the private key PKCS#8 encrypted with
// password (empty is allowed) as an "ENCRYPTED SIGSTORE PRIVATE KEY", and
// the public key as cosign.pub.
func GenerateKeyPair(password []byte) (privPEM, pubPEM []byte, err error) {
	if password == nil {
		password = []byte{} // nil would make cryptoutils skip encryption
	}
	privPEM, pubPEM, err = cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return privPEM, pubPEM, nil
}

// GenerateUnencryptedKeyPair makes an ECDSA P-256 key pair whose private
// key is a plain PKCS#8 "PRIVATE KEY", for secret stores that hold keys
// but not passwords.
func GenerateUnencryptedKeyPair() (privPEM, pubPEM []byte, err error) {
	privPEM, pubPEM, err = cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return privPEM, pubPEM, nil
}

// Payload returns the simple signing payload for repo@digest, byte for
// byte as cosign writes it.
func Payload(repo string, digest v1.Hash) ([]byte, error) {
	// payload.Cosign would derive the reference by parsing repo, which
	// rewrites short names (r/x becomes index.docker.io/r/x); the signer's
	// repo is kept as given instead, as cosign passes Repository.Name().
	return json.Marshal(payload.SimpleContainerImage{
		Critical: payload.Critical{
			Identity: payload.Identity{DockerReference: repo},
			Image:    payload.Image{DockerManifestDigest: digest.String()},
			Type:     payload.CosignSignatureType,
		},
	})
}

// Signature is one signature as stored: the payload and the raw signature.
type Signature struct {
	Payload   []byte
	Signature []byte
}

// SignPayload signs payload with key as cosign does: SHA-256, then ECDSA
// (ASN.1) or RSA PKCS#1 v1.5; Ed25519 signs the payload itself.
func SignPayload(key crypto.Signer, payload []byte) ([]byte, error) {
	s, err := signature.LoadSigner(key, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %T: %v", ErrKey, key, err)
	}
	return s.SignMessage(bytes.NewReader(payload))
}

func verifyRaw(pub crypto.PublicKey, payload, sig []byte) bool {
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return false
	}
	return v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)) == nil
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
		var p payload.SimpleContainerImage
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			reasons = append(reasons, fmt.Sprintf("signature %d: payload: %v", i+1, err))
			continue
		}
		if p.Critical.Type != payload.CosignSignatureType {
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
