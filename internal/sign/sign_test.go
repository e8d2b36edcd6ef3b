package sign

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"rung.dev/rung/internal/image/imagetest"
)

func push(t *testing.T, ref string) (name.Tag, v1.Hash) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return tag, d
}

func ecKey(t *testing.T) (*ecdsa.PrivateKey, Key) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k, Key{Name: "ci.pub", Public: k.Public()}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	reg := imagetest.Registry(t)
	tag, digest := push(t, reg+"/acme/api:1.0")
	priv, pub := ecKey(t)
	_, other := ecKey(t)
	other.Name = "other.pub"

	signed, err := Sign(t.Context(), tag, priv)
	if err != nil {
		t.Fatal(err)
	}
	if signed.DigestStr() != digest.String() {
		t.Fatalf("signed %s, pushed %s", signed, digest)
	}
	res, err := Verify(t.Context(), tag, []Key{other, pub})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest.DigestStr() != digest.String() || res.Key.Name != "ci.pub" {
		t.Errorf("Verify = %s by %s", res.Digest, res.Key.Name)
	}
	if _, err := Verify(t.Context(), tag, []Key{other}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("verify with the wrong key: err = %v, want ErrUntrusted", err)
	}

	// A second signature is added next to the first, as cosign does.
	priv2, pub2 := ecKey(t)
	if _, err := Sign(t.Context(), signed, priv2); err != nil {
		t.Fatal(err)
	}
	sigs, err := Signatures(t.Context(), tag.Context(), digest)
	if err != nil || len(sigs) != 2 {
		t.Fatalf("%d signatures, %v", len(sigs), err)
	}
	if _, err := Verify(t.Context(), signed, []Key{pub2}); err != nil {
		t.Errorf("second key: %v", err)
	}
}

// TestTagMovedAfterSigning: the tag now names an unsigned image, and
// verification of the tag fails rather than falling back to the old one.
func TestTagMovedAfterSigning(t *testing.T) {
	reg := imagetest.Registry(t)
	tag, _ := push(t, reg+"/acme/api:latest")
	priv, pub := ecKey(t)
	if _, err := Sign(t.Context(), tag, priv); err != nil {
		t.Fatal(err)
	}
	_, moved := push(t, reg+"/acme/api:latest")
	res, err := Verify(t.Context(), tag, []Key{pub})
	if !errors.Is(err, ErrNoSignature) {
		t.Fatalf("err = %v, want ErrNoSignature", err)
	}
	if res.Digest.DigestStr() != moved.String() {
		t.Errorf("resolved %s, want the moved tag's %s", res.Digest, moved)
	}
}

func TestUnsigned(t *testing.T) {
	reg := imagetest.Registry(t)
	tag, _ := push(t, reg+"/acme/api:1.0")
	_, pub := ecKey(t)
	if _, err := Verify(t.Context(), tag, []Key{pub}); !errors.Is(err, ErrNoSignature) {
		t.Errorf("err = %v, want ErrNoSignature", err)
	}
}

// TestVerifySignatures covers the pure part: a signature is bound to its
// digest and to its payload.
func TestVerifySignatures(t *testing.T) {
	priv, pub := ecKey(t)
	d1, _ := v1.NewHash("sha256:" + strings.Repeat("a", 64))
	d2, _ := v1.NewHash("sha256:" + strings.Repeat("b", 64))
	pl, _ := Payload("registry.example/acme/api", d1)
	sig, err := SignPayload(priv, pl)
	if err != nil {
		t.Fatal(err)
	}
	good := Signature{Payload: pl, Signature: sig}
	if k, err := VerifySignatures(d1, []Signature{good}, []Key{pub}); err != nil || k.Name != "ci.pub" {
		t.Errorf("good signature: %v", err)
	}
	tampered := Signature{Payload: []byte(strings.Replace(string(pl), "acme", "evil", 1)), Signature: sig}
	tests := []struct {
		name   string
		digest v1.Hash
		sigs   []Signature
		want   error
	}{
		{"other digest", d2, []Signature{good}, ErrUntrusted},
		{"tampered payload", d1, []Signature{tampered}, ErrUntrusted},
		{"garbage payload", d1, []Signature{{Payload: []byte("{"), Signature: sig}}, ErrUntrusted},
		{"none", d1, nil, ErrNoSignature},
	}
	for _, tc := range tests {
		if _, err := VerifySignatures(tc.digest, tc.sigs, []Key{pub}); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestPayloadFormat pins cosign's simple signing payload byte for byte.
func TestPayloadFormat(t *testing.T) {
	d, _ := v1.NewHash("sha256:" + strings.Repeat("0", 64))
	got, err := Payload("registry.example/acme/api", d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"critical":{"identity":{"docker-reference":"registry.example/acme/api"},"image":{"docker-manifest-digest":"sha256:` +
		strings.Repeat("0", 64) + `"},"type":"cosign container image signature"},"optional":null}`
	if string(got) != want {
		t.Errorf("payload\n got %s\nwant %s", got, want)
	}
	if tag := SignatureTag(d); tag != "sha256-"+strings.Repeat("0", 64)+".sig" {
		t.Errorf("SignatureTag = %s", tag)
	}
}

func TestKeys(t *testing.T) {
	priv, _ := ecKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	sec1der, _ := x509.MarshalECPrivateKey(priv)
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1der})
	for _, data := range [][]byte{pkcs8, sec1} {
		// No password source: an unencrypted key must not need one.
		s, err := ParsePrivateKey("k", data, nil)
		if err != nil {
			t.Fatal(err)
		}
		pubPEM, err := MarshalPublicKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParsePublicKey("k.pub", pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !priv.PublicKey.Equal(k.Public) {
			t.Errorf("public key round trip: got another key")
		}
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})
	if _, err := ParsePrivateKey("cert.pem", cert, nil); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "not a private key") {
		t.Errorf("certificate as a private key: %v", err)
	}
	if _, err := ParsePublicKey("x", []byte("nope")); !errors.Is(err, ErrKey) {
		t.Errorf("garbage public key: %v", err)
	}

	// Ed25519 signs the payload itself.
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	d, _ := v1.NewHash("sha256:" + strings.Repeat("c", 64))
	pl, _ := Payload("r/x", d)
	sig, err := SignPayload(edPriv, pl)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySignatures(d, []Signature{{pl, sig}}, []Key{{Name: "ed", Public: edPriv.Public().(crypto.PublicKey)}}); err != nil {
		t.Errorf("ed25519: %v", err)
	}
}
