package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Token format: "rung_" + ID + "_" + secret, where ID is 16 and secret 64
// lowercase hex digits (8 and 32 random bytes). The ID names the stored
// record; only the SHA-256 of the secret is stored. A fast hash is enough
// for 256 random bits: there is nothing to guess a dictionary against.
const (
	tokenPrefix = "rung_"
	idBytes     = 8
	secretBytes = 32
)

// ErrBadToken: a bearer token that is malformed, unknown or does not match.
// Callers answer every such case the same way.
var ErrBadToken = errors.New("invalid token")

// Record is what the server stores for one token.
type Record struct {
	Principal
	// Hash is the hex SHA-256 of the token's secret part.
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	// Expires is when the token stops working; zero for never (only rung
	// up's admin token, which `rung token rotate-admin` replaces).
	Expires time.Time `json:"expires,omitzero"`
	// Name is a short label chosen by its creator, for `rung token list`.
	Name string `json:"name,omitempty"`
	// Description says who or what the token is for.
	Description string `json:"description,omitempty"`
	// TenantUID is the unique id of the tenant a tenant role is scoped
	// to, as it was when the token was made: a tenant deleted and made
	// again under the same name has another, and its old tokens fail.
	TenantUID string `json:"tenantUID,omitempty"`
	// Admin marks rung up's admin token: rotating it revokes every token
	// so marked.
	Admin bool `json:"admin,omitempty"`
}

// Expired reports whether the token no longer works at now.
func (rec Record) Expired(now time.Time) bool {
	return !rec.Expires.IsZero() && !now.Before(rec.Expires)
}

// NewToken makes a token for p from random bytes of rand (crypto/rand if
// nil). It returns the token to hand to its holder, once, and the record to
// store; p.ID is replaced by the new token's ID.
func NewToken(random io.Reader, p Principal, now time.Time, description string) (string, Record, error) {
	if err := p.Validate(); err != nil {
		return "", Record{}, err
	}
	if random == nil {
		random = rand.Reader
	}
	buf := make([]byte, idBytes+secretBytes)
	if _, err := io.ReadFull(random, buf); err != nil {
		return "", Record{}, fmt.Errorf("new token: %w", err)
	}
	id := hex.EncodeToString(buf[:idBytes])
	secret := hex.EncodeToString(buf[idBytes:])
	p.ID = id
	rec := Record{Principal: p, Hash: hashSecret(secret), Created: now.UTC(), Description: description}
	return tokenPrefix + id + "_" + secret, rec, nil
}

// ParseToken splits a token into its ID and secret, checking the format.
func ParseToken(token string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", "", ErrBadToken
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || !isHex(id, idBytes*2) || !isHex(secret, secretBytes*2) {
		return "", "", ErrBadToken
	}
	return id, secret, nil
}

// Check reports whether secret is the one rec was made for, in time that
// does not depend on where they differ.
func (rec Record) Check(secret string) bool {
	want, err := hex.DecodeString(rec.Hash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
