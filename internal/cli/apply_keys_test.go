package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rung.dev/rung/internal/sign"
)

// TestInlineSigningKeys: apply sends signedBy key files as their PEM text,
// read relative to the manifest; PEM entries stay; a bad key is invalid.
func TestInlineSigningKeys(t *testing.T) {
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.MarshalPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pub2, _ := sign.MarshalPublicKey(k2.Public())
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("keys/ci.pub", string(pub))
	write("keys/bad.pub", "not a key")
	indent := "        " + strings.ReplaceAll(strings.TrimSpace(string(pub2)), "\n", "\n        ")
	good := write("tenant.yaml", `apiVersion: rung.dev/v1
kind: Tenant
metadata: {name: biology}
spec:
  organization: state-university
  images:
    signedBy:
      - keys/ci.pub
      - |
`+indent+"\n")
	set, err := readManifests([]string{good})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Validate(); err != nil {
		t.Fatalf("PEM in signedBy does not validate: %v", err)
	}
	if err := inlineSigningKeys(set); err != nil {
		t.Fatal(err)
	}
	got := set.Tenants[0].Spec.Images.SignedBy
	if len(got) != 2 || got[0] != string(pub) || got[1] != string(pub2) {
		t.Errorf("signedBy = %q, want the two PEM keys", got)
	}
	for _, bad := range []string{"keys/bad.pub", "keys/missing.pub"} {
		f := write("bad.yaml", "apiVersion: rung.dev/v1\nkind: Tenant\nmetadata: {name: geology}\nspec:\n  organization: u\n  images: {signedBy: ["+bad+"]}\n")
		set, err := readManifests([]string{f})
		if err != nil {
			t.Fatal(err)
		}
		if err := inlineSigningKeys(set); !isInvalid(err) || !strings.Contains(err.Error(), "signedBy[0]") {
			t.Errorf("%s: err %v, want an invalid-manifest error", bad, err)
		}
	}
}

func isInvalid(err error) bool {
	e, ok := errors.AsType[*exitError](err)
	return ok && e.code == ExitInvalid
}
