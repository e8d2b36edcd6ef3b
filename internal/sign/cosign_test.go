package sign

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"rung.dev/rung/internal/image/imagetest"
)

// cosignPassword is the password testdata/cosign/cosign.key was made with
// (see testdata/cosign/README.md).
const cosignPassword = "rung-fixture-password"

// cosignFixture is what cosign v2.6.5 wrote: its key pair, and its
// signature of one image as stored in the registry.
type cosignFixture struct {
	key, pub []byte
	image    name.Digest
	digest   v1.Hash
	payload  []byte
	sig      []byte
	// manifest and config are the signature image cosign pushed.
	manifest, config []byte
}

func readFixture(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cosign", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadCosign(t *testing.T) cosignFixture {
	t.Helper()
	f := cosignFixture{
		key:      readFixture(t, "cosign.key"),
		pub:      readFixture(t, "cosign.pub"),
		payload:  readFixture(t, "payload.json"),
		manifest: readFixture(t, "sig-manifest.json"),
		config:   readFixture(t, "sig-config.json"),
	}
	var err error
	if f.image, err = name.NewDigest(strings.TrimSpace(string(readFixture(t, "image.txt")))); err != nil {
		t.Fatal(err)
	}
	if f.digest, err = v1.NewHash(f.image.DigestStr()); err != nil {
		t.Fatal(err)
	}
	if f.sig, err = decodeSig(strings.TrimSpace(string(readFixture(t, "signature.b64")))); err != nil {
		t.Fatal(err)
	}
	return f
}

func cosignPub(t *testing.T, f cosignFixture) Key {
	t.Helper()
	k, err := ParsePublicKey("cosign.pub", f.pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// relabel re-encodes a PEM file's bytes under another block type.
func relabel(t *testing.T, data []byte, typ string) []byte {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("not PEM")
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b.Bytes})
}

// TestCosignKey decrypts the private key cosign generate-key-pair wrote,
// and checks the result is the half of cosign.pub, not merely some key.
func TestCosignKey(t *testing.T) {
	f := loadCosign(t)
	pub := cosignPub(t, f)
	errNoTTY := errors.New("no terminal")
	// The decrypted bytes are cosign's, so changing one in the middle of
	// the ciphertext must fail authentication, not yield another key.
	damaged := relabel(t, f.key, EncryptedKeyPEM)
	{
		b, _ := pem.Decode(damaged)
		var blob map[string]any
		if err := json.Unmarshal(b.Bytes, &blob); err != nil {
			t.Fatalf("cosign.key is not go-securesystemslib's JSON: %v", err)
		}
		c, err := base64.StdEncoding.DecodeString(blob["ciphertext"].(string))
		if err != nil {
			t.Fatal(err)
		}
		c[len(c)/2] ^= 1
		blob["ciphertext"] = base64.StdEncoding.EncodeToString(c)
		b.Bytes, _ = json.Marshal(blob)
		damaged = pem.EncodeToMemory(b)
	}
	tests := []struct {
		name    string
		data    []byte
		pass    Password
		wantErr []string // substrings of the error; nil: no error
	}{
		{"cosign's key, right password", f.key, StaticPassword([]byte(cosignPassword)), nil},
		// cosign before v2.0.1 wrote the same bytes under another label.
		{"old cosign label", relabel(t, f.key, legacyEncryptedKeyPEM), StaticPassword([]byte(cosignPassword)), nil},
		{"wrong password", f.key, StaticPassword([]byte(cosignPassword + "x")), []string{"cosign.key", "wrong password"}},
		{"empty password", f.key, StaticPassword(nil), []string{"cosign.key", "wrong password"}},
		{"no password source", f.key, nil, []string{"cosign.key", "encrypted", "no password"}},
		{"password source fails", f.key, func(string) ([]byte, error) { return nil, errNoTTY }, []string{"cosign.key", "no terminal"}},
		{"damaged ciphertext", damaged, StaticPassword([]byte(cosignPassword)), []string{"cosign.key", "damaged"}},
		{"not JSON inside", pem.EncodeToMemory(&pem.Block{Type: EncryptedKeyPEM, Bytes: []byte("{")}),
			StaticPassword([]byte(cosignPassword)), []string{"cosign.key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParsePrivateKey("cosign.key", tc.data, tc.pass)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !pub.Public.(*ecdsa.PublicKey).Equal(s.Public()) {
					t.Fatal("decrypted key is not the half of cosign.pub")
				}
				return
			}
			if !errors.Is(err, ErrKey) {
				t.Fatalf("err = %v, want ErrKey", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to say %q", err, w)
				}
			}
			if tc.name == "password source fails" && !errors.Is(err, errNoTTY) {
				t.Errorf("err = %v does not wrap the password source's error", err)
			}
		})
	}
}

// TestSecuresystemslibKeys builds keys with go-securesystemslib directly,
// the way cosign does, independently of sigstore's helpers rung uses.
func TestSecuresystemslibKeys(t *testing.T) {
	priv, _ := ecKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"s3cret", ""} {
		enc, err := encrypted.Encrypt(der, []byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		for _, label := range []string{EncryptedKeyPEM, legacyEncryptedKeyPEM} {
			data := pem.EncodeToMemory(&pem.Block{Type: label, Bytes: enc})
			s, err := ParsePrivateKey("k", data, StaticPassword([]byte(pw)))
			if err != nil {
				t.Fatalf("%s, password %q: %v", label, pw, err)
			}
			if !priv.PublicKey.Equal(s.Public()) {
				t.Errorf("%s, password %q: another key", label, pw)
			}
			if _, err := ParsePrivateKey("k", data, StaticPassword([]byte(pw+"!"))); !errors.Is(err, ErrKey) {
				t.Errorf("%s, password %q: wrong password: err = %v", label, pw, err)
			}
		}
	}
}

// TestGenerateKeyPair checks rung's new keys are cosign's format: read
// back with go-securesystemslib and x509 alone, not with rung's parser.
func TestGenerateKeyPair(t *testing.T) {
	for _, pw := range []string{"s3cret", ""} {
		privPEM, pubPEM, err := GenerateKeyPair([]byte(pw))
		if err != nil {
			t.Fatal(err)
		}
		b, rest := pem.Decode(privPEM)
		if b == nil || b.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("password %q: private key PEM %q", pw, privPEM)
		}
		der, err := encrypted.Decrypt(b.Bytes, []byte(pw))
		if err != nil {
			t.Fatalf("password %q: decrypt: %v", pw, err)
		}
		if _, err := encrypted.Decrypt(b.Bytes, []byte(pw+"!")); err == nil {
			t.Errorf("password %q: decrypts with another password", pw)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatal(err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			t.Fatalf("password %q: %T, want ECDSA P-256", pw, k)
		}
		pb, _ := pem.Decode(pubPEM)
		if pb == nil || pb.Type != "PUBLIC KEY" {
			t.Fatalf("public key PEM %q", pubPEM)
		}
		pub, err := x509.ParsePKIXPublicKey(pb.Bytes)
		if err != nil || !ec.PublicKey.Equal(pub) {
			t.Errorf("password %q: cosign.pub is not the private key's half (%v)", pw, err)
		}
	}

	privPEM, pubPEM, err := GenerateUnencryptedKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(privPEM)
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("unencrypted private key PEM %q", privPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey("k.pub", pubPEM)
	if err != nil || !k.(*ecdsa.PrivateKey).PublicKey.Equal(pub.Public) {
		t.Errorf("unencrypted: public key is not the private key's half (%v)", err)
	}
}

// TestCosignSignature verifies the signature cosign sign made, with
// cosign's public key, and only that key, over only those bytes.
func TestCosignSignature(t *testing.T) {
	f := loadCosign(t)
	pub := cosignPub(t, f)
	_, other := ecKey(t)

	// rung writes the very payload cosign wrote for the same image.
	mine, err := Payload(f.image.Context().Name(), f.digest)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(f.payload), string(mine)); diff != "" {
		t.Errorf("payload differs from cosign's (-cosign +rung):\n%s", diff)
	}

	good := Signature{Payload: f.payload, Signature: f.sig}
	if k, err := VerifySignatures(f.digest, []Signature{good}, []Key{other, pub}); err != nil || k.Name != "cosign.pub" {
		t.Fatalf("cosign's signature with cosign.pub: key %q, %v", k.Name, err)
	}
	if _, err := VerifySignatures(f.digest, []Signature{good}, []Key{other}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("cosign's signature with another key: err = %v, want ErrUntrusted", err)
	}
	// One byte changed in the claimed identity: the payload still parses
	// and names the digest, so only the signature can reject it.
	i := bytes.Index(f.payload, []byte("test/img"))
	if i < 0 {
		t.Fatal("fixture payload does not name test/img")
	}
	tampered := bytes.Clone(f.payload)
	tampered[i+len("test/im")] = 'x'
	if _, err := VerifySignatures(f.digest, []Signature{{Payload: tampered, Signature: f.sig}}, []Key{pub}); !errors.Is(err, ErrUntrusted) ||
		!strings.Contains(err.Error(), "not made by cosign.pub") {
		t.Errorf("tampered payload: err = %v, want ErrUntrusted by signature", err)
	}
	sig := bytes.Clone(f.sig)
	sig[len(sig)-1] ^= 1
	if _, err := VerifySignatures(f.digest, []Signature{{Payload: f.payload, Signature: sig}}, []Key{pub}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("changed signature: err = %v, want ErrUntrusted", err)
	}
}

// rawManifest pushes a manifest's exact bytes.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// TestCosignSignatureInRegistry serves the signature image cosign pushed,
// byte for byte, and checks rung finds and verifies it by the tag cosign
// chose; then rung signs with cosign's private key, and the new signature
// verifies with cosign.pub next to cosign's own.
func TestCosignSignatureInRegistry(t *testing.T) {
	f := loadCosign(t)
	pub := cosignPub(t, f)
	reg := imagetest.Registry(t)
	repo, err := name.NewRepository(reg + "/test/img")
	if err != nil {
		t.Fatal(err)
	}
	for _, blob := range [][]byte{f.config, f.payload} {
		if err := remote.WriteLayer(repo, static.NewLayer(blob, types.OCILayer)); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Put(repo.Tag(SignatureTag(f.digest)), rawManifest{f.manifest, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	img := repo.Digest(f.digest.String())
	res, err := Verify(t.Context(), img, []Key{pub})
	if err != nil {
		t.Fatalf("cosign's signature from the registry: %v", err)
	}
	if res.Key.Name != "cosign.pub" || res.Digest.DigestStr() != f.digest.String() {
		t.Errorf("Verify = %s by %s", res.Digest, res.Key.Name)
	}
	_, other := ecKey(t)
	if _, err := Verify(t.Context(), img, []Key{other}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("another key: err = %v, want ErrUntrusted", err)
	}

	// rung signs with cosign's key; Sign needs the image itself to exist
	// only to resolve a tag, and img is a digest.
	key, err := ParsePrivateKey("cosign.key", f.key, StaticPassword([]byte(cosignPassword)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(t.Context(), img, key); err != nil {
		t.Fatal(err)
	}
	sigs, err := Signatures(t.Context(), repo, f.digest)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("%d signatures, %v; want cosign's and rung's", len(sigs), err)
	}
	if diff := cmp.Diff(f.payload, sigs[0].Payload); diff != "" {
		t.Errorf("cosign's signature was changed by rung's (-want +got):\n%s", diff)
	}
	for i, s := range sigs {
		if _, err := VerifySignatures(f.digest, []Signature{s}, []Key{pub}); err != nil {
			t.Errorf("signature %d with cosign.pub: %v", i+1, err)
		}
	}
}

// TestPKCS8EncryptedKey: OpenSSL's password-protected PKCS#8 takes the
// same password source as cosign's keys. The files were made with OpenSSL
// 3.0.19: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256
// -aes-256-cbc -pass pass:s3cret, and openssl pkey -pubout for the .pub.
func TestPKCS8EncryptedKey(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "openssl-pkcs8-encrypted.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(filepath.Join("testdata", "openssl-pkcs8-encrypted.pub"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParsePrivateKey("k.pem", data, StaticPassword([]byte("s3cret")))
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	if !pub.Public.(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Error("decrypted key is not the half of the .pub")
	}
	if _, err := ParsePrivateKey("k.pem", data, StaticPassword([]byte("nope"))); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
}
