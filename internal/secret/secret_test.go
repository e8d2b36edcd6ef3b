package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpenRotate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	k, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v", fi, err)
	}
	plain := []byte("hunter2")
	s := k.Seal("/secrets/acme/db", plain)
	if bytes.Contains(s.Data, plain) {
		t.Fatal("sealed data holds the value")
	}
	if got, err := k.Open("/secrets/acme/db", s); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	// Bound to its store key; changed bytes do not open.
	if _, err := k.Open("/secrets/evil/db", s); !errors.Is(err, ErrSealed) {
		t.Errorf("opened under another key: %v", err)
	}
	bad := s
	bad.Data = append([]byte{}, s.Data...)
	bad.Data[0] ^= 1
	if _, err := k.Open("/secrets/acme/db", bad); !errors.Is(err, ErrSealed) {
		t.Errorf("opened changed bytes: %v", err)
	}

	// Rotation: new values under the new key, old ones still open; a
	// reopened keyring has both; retiring drops the old key.
	old := k.Primary()
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	s2 := k.Seal("/secrets/acme/db", plain)
	if s2.KeyID == old || s.KeyID != old {
		t.Fatalf("key ids %s %s (old %s)", s.KeyID, s2.KeyID, old)
	}
	k2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []Sealed{s, s2} {
		if got, err := k2.Open("/secrets/acme/db", x); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("reopened keyring opens %s: %q %v", x.KeyID, got, err)
		}
	}
	if k.Digest(plain) != k2.Digest(plain) || k.Digest(plain) == k.Digest([]byte("other")) {
		t.Error("digests not stable or not distinct")
	}
	if err := k2.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.Open("/secrets/acme/db", s); !errors.Is(err, ErrSealed) {
		t.Errorf("a retired key still opens: %v", err)
	}
	// A keyring others may read is refused.
	os.Chmod(path, 0o644)
	if _, err := Open(path); err == nil {
		t.Error("a world-readable keyring was accepted")
	}
}
