// Package secret seals tenants' secret values for the store: AES-256-GCM
// under a keyring kept in a file that rung up makes (mode 0600), each
// sealed value bound to its store key (the additional data), so that a
// sealed value moved to another key does not open. Rotation adds a new
// primary key; values sealed under older keys still open until they are
// sealed again.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// ErrSealed: a sealed value that does not open (another store key, a key
// the keyring no longer has, or changed bytes).
var ErrSealed = errors.New("sealed value does not open")

// key is one AES-256 key with its id.
type key struct {
	ID  string `json:"id"`
	Key []byte `json:"key"` // 32 bytes
}

// file is the keyring file's content.
type file struct {
	// Keys, primary (newest) first.
	Keys []key `json:"keys"`
	// DigestKey keys the HMAC that shows whether a value changed without
	// showing it; it never rotates, so digests stay comparable.
	DigestKey []byte `json:"digestKey"`
}

// Keyring holds the keys; safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	path string
	f    file
}

// Sealed is a value as stored: the key id, nonce and ciphertext.
type Sealed struct {
	KeyID string `json:"keyID"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"data"`
}

// Open reads the keyring at path, making it (with one new key, mode 0600)
// if it does not exist.
func Open(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k := &Keyring{path: path, f: file{DigestKey: random(32)}}
		k.f.Keys = []key{newKey()}
		if err := k.save(); err != nil {
			return nil, err
		}
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret keyring: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secret keyring %s: mode %v lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	k := &Keyring{path: path}
	if err := json.Unmarshal(data, &k.f); err != nil {
		return nil, fmt.Errorf("secret keyring %s: not a keyring: %v", path, err)
	}
	if len(k.f.Keys) == 0 || len(k.f.DigestKey) != 32 {
		return nil, fmt.Errorf("secret keyring %s: no keys or no digest key", path)
	}
	for _, x := range k.f.Keys {
		if len(x.Key) != 32 || x.ID == "" {
			return nil, fmt.Errorf("secret keyring %s: key %q is not a 32-byte key with an id", path, x.ID)
		}
	}
	return k, nil
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return b
}

func newKey() key { return key{ID: hex.EncodeToString(random(4)), Key: random(32)} }

// save writes the keyring atomically, mode 0600.
func (k *Keyring) save() error {
	data, err := json.Marshal(k.f)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("secret keyring: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(k.path), ".keyring-*")
	if err != nil {
		return fmt.Errorf("secret keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), k.path)
	}
	if err != nil {
		return fmt.Errorf("secret keyring %s: %w", k.path, err)
	}
	return nil
}

// Primary is the id of the key new values are sealed with.
func (k *Keyring) Primary() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.f.Keys[0].ID
}

// Rotate makes a new primary key and saves the keyring; older keys stay
// to open what they sealed until it is sealed again.
func (k *Keyring) Rotate() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.f.Keys
	k.f.Keys = append([]key{newKey()}, old...)
	if err := k.save(); err != nil {
		k.f.Keys = old
		return "", err
	}
	return k.f.Keys[0].ID, nil
}

// Retire drops every key but the primary, once nothing is sealed with
// them any more.
func (k *Keyring) Retire() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.f.Keys
	k.f.Keys = old[:1]
	if err := k.save(); err != nil {
		k.f.Keys = old
		return err
	}
	return nil
}

func gcm(b []byte) cipher.AEAD {
	block, err := aes.NewCipher(b)
	if err != nil {
		panic(err) // keys are checked to be 32 bytes
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return a
}

// Seal encrypts plain under the primary key, bound to ad (the store key).
func (k *Keyring) Seal(ad string, plain []byte) Sealed {
	k.mu.RLock()
	p := k.f.Keys[0]
	k.mu.RUnlock()
	a := gcm(p.Key)
	nonce := random(a.NonceSize())
	return Sealed{KeyID: p.ID, Nonce: nonce, Data: a.Seal(nil, nonce, plain, []byte(ad))}
}

// Open decrypts s, which must have been sealed for ad.
func (k *Keyring) Open(ad string, s Sealed) ([]byte, error) {
	k.mu.RLock()
	i := slices.IndexFunc(k.f.Keys, func(x key) bool { return x.ID == s.KeyID })
	var kk key
	if i >= 0 {
		kk = k.f.Keys[i]
	}
	k.mu.RUnlock()
	if i < 0 {
		return nil, fmt.Errorf("key %q not in the keyring: %w", s.KeyID, ErrSealed)
	}
	a := gcm(kk.Key)
	if len(s.Nonce) != a.NonceSize() {
		return nil, fmt.Errorf("nonce: %w", ErrSealed)
	}
	plain, err := a.Open(nil, s.Nonce, s.Data, []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSealed, err)
	}
	return plain, nil
}

// Digest is a keyed hash of value (HMAC-SHA256, hex, 16 bytes): it shows
// whether a value changed, and nothing about it.
func (k *Keyring) Digest(value []byte) string {
	k.mu.RLock()
	m := hmac.New(sha256.New, k.f.DigestKey)
	k.mu.RUnlock()
	m.Write(value)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)[:16])
}
