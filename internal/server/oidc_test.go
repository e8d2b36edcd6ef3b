package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server"
)

// issuer signs JWTs as a test identity provider would.
type issuer struct {
	t   *testing.T
	key *ecdsa.PrivateKey
	kid string
}

func newIssuer(t *testing.T, kid string) *issuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{t: t, key: key, kid: kid}
}

// jwks writes the issuer's public key set to a file.
func (is *issuer) jwks() string {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: string(jose.ES256), Use: "sig"}}}
	data, err := json.Marshal(set)
	if err != nil {
		is.t.Fatal(err)
	}
	p := filepath.Join(is.t.TempDir(), "jwks.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		is.t.Fatal(err)
	}
	return p
}

// sign makes a JWT with std and the rung claims.
func (is *issuer) sign(std jwt.Claims, extra map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.key, KeyID: is.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		is.t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(std).Claims(extra).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

// TestOIDC: JWTs signed by the configured issuer's key are verified
// offline against its JWKS file and mapped to tenant and role; forged,
// expired, foreign or unmapped ones are refused.
func TestOIDC(t *testing.T) {
	t.Parallel()
	idp := newIssuer(t, "k1")
	oidc, err := newOIDC(auth.OIDCConfig{Issuer: "https://idp.example", Audience: "rung", JWKSFile: idp.jwks()})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(c *server.Config) { c.OIDC = oidc }).seed()
	now := time.Now()
	std := func(mod func(*jwt.Claims)) jwt.Claims {
		c := jwt.Claims{Issuer: "https://idp.example", Audience: jwt.Audience{"rung"}, Subject: "alice",
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	adminOf := func(tenant string) map[string]any {
		return map[string]any{"rung_tenant": tenant, "rung_role": "tenant-admin"}
	}

	// The allowed case: a tenant-admin of biology works in biology only.
	e.tokens["jwt"] = idp.sign(std(nil), adminOf("biology"))
	if r := e.do("jwt", "GET", "/v1/whoami", nil); r.status != http.StatusOK {
		t.Fatalf("valid JWT: %d %s", r.status, r.body)
	}
	if r := e.do("jwt", "PUT", "/v1/tenants/biology/workloads/oidc", workloadJSON("biology", "oidc", 1)); r.status != http.StatusCreated {
		t.Errorf("valid JWT applies in its tenant: %d %s", r.status, r.body)
	}
	if r := e.do("jwt", "GET", "/v1/tenants/geology/workloads/rocks", nil); r.status != http.StatusNotFound {
		t.Errorf("valid JWT reads another tenant: %d", r.status)
	}
	e.tokens["jwt-op"] = idp.sign(std(nil), map[string]any{"rung_role": "operator"})
	if r := e.do("jwt-op", "GET", "/v1/tokens", nil); r.status != http.StatusOK {
		t.Errorf("operator JWT: %d", r.status)
	}

	forger := newIssuer(t, "k1") // same kid, another key
	other := newIssuer(t, "k2")
	for name, tok := range map[string]string{
		"forged signature": forger.sign(std(nil), adminOf("biology")),
		"unknown kid":      other.sign(std(nil), adminOf("biology")),
		"expired":          idp.sign(std(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) }), adminOf("biology")),
		"no expiry":        idp.sign(std(func(c *jwt.Claims) { c.Expiry = nil }), adminOf("biology")),
		"other issuer":     idp.sign(std(func(c *jwt.Claims) { c.Issuer = "https://evil.example" }), adminOf("biology")),
		"other audience":   idp.sign(std(func(c *jwt.Claims) { c.Audience = jwt.Audience{"grafana"} }), adminOf("biology")),
		"no role":          idp.sign(std(nil), map[string]any{"rung_tenant": "biology"}),
		"node role":        idp.sign(std(nil), map[string]any{"rung_role": "node"}),
		"missing tenant":   idp.sign(std(nil), adminOf("nosuch")),
		"bad tenant":       idp.sign(std(nil), adminOf("../geology")),
		"operator+tenant":  idp.sign(std(nil), map[string]any{"rung_role": "operator", "rung_tenant": "biology"}),
		"not a JWT":        "a.b.c",
	} {
		e.tokens[name] = tok
		if r := e.do(name, "GET", "/v1/whoami", nil); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
}

// TestOIDCConfig: an unusable configuration is refused naming the field.
func TestOIDCConfig(t *testing.T) {
	t.Parallel()
	idp := newIssuer(t, "k1")
	priv := filepath.Join(t.TempDir(), "private.json")
	data, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: idp.key, KeyID: "k1"}}})
	os.WriteFile(priv, data, 0o600)
	noKid := filepath.Join(t.TempDir(), "nokid.json")
	data, _ = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &idp.key.PublicKey}}})
	os.WriteFile(noKid, data, 0o600)
	for _, tc := range []struct {
		cfg  auth.OIDCConfig
		want string
	}{
		{auth.OIDCConfig{Audience: "rung", JWKSFile: idp.jwks()}, "oidc.issuer"},
		{auth.OIDCConfig{Issuer: "i", JWKSFile: idp.jwks()}, "oidc.audience"},
		{auth.OIDCConfig{Issuer: "i", Audience: "rung"}, "oidc.jwksFile"},
		{auth.OIDCConfig{Issuer: "i", Audience: "rung", JWKSFile: priv}, "not a public key"},
		{auth.OIDCConfig{Issuer: "i", Audience: "rung", JWKSFile: noKid}, "kid"},
	} {
		_, err := newOIDC(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := newOIDC(auth.OIDCConfig{Issuer: "i", Audience: "rung", JWKSFile: idp.jwks()}); err != nil {
		t.Errorf("good config: %v", err)
	}
}

// newOIDC reads cfg's JWKS file as rung up does.
func newOIDC(cfg auth.OIDCConfig) (*auth.OIDC, error) {
	data, _ := os.ReadFile(cfg.JWKSFile)
	return auth.NewOIDC(cfg, data)
}
