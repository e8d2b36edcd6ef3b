package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/client"
)

// TestUpOIDC: rung up configured with an issuer's JWKS file lets in the
// JWTs that issuer signs (here, the test), mapped to role and tenant; a
// config naming a missing file is refused naming the field.
func TestUpOIDC(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256"}}})
	jwksFile := filepath.Join(dir, "jwks.json")
	os.WriteFile(jwksFile, jwks, 0o644)
	oidc := &auth.OIDCConfig{Issuer: "https://idp.example", Audience: "rung", JWKSFile: jwksFile}
	cfg := Config{DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", ClientConfig: "-", OIDC: oidc}
	info, stop := up(t, cfg)
	defer stop()

	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://idp.example", Audience: jwt.Audience{"rung"}, Subject: "alice",
		Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Claims(map[string]any{"rung_role": "operator"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(info.URL, tok)
	w, err := c.WhoAmI(t.Context())
	if err != nil || w.Role != "operator" || w.ID != "oidc:alice" {
		t.Fatalf("whoami with a JWT: %+v %v", w, err)
	}

	bad := Config{DataDir: filepath.Join(dir, "data2"), Listen: "127.0.0.1:0", ClientConfig: "-",
		OIDC: &auth.OIDCConfig{Issuer: "i", Audience: "a", JWKSFile: filepath.Join(dir, "missing.json")}}
	if err := Up(t.Context(), bad, nil, func(Info) { t.Error("ready with a missing JWKS file") }); err == nil || !strings.Contains(err.Error(), "oidc.jwksFile") {
		t.Errorf("missing JWKS file: %v", err)
	}
}

// TestLoadConfigIdentity: the identity and robustness options read from a
// config file.
func TestLoadConfigIdentity(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rung.yaml")
	os.WriteFile(p, []byte(`metricsListen: 127.0.0.1:9440
storeTimeout: 3s
secretKeyFile: /etc/rung/secrets.key
limits: {tokenRate: 50, tokenBurst: 100, operatorRate: 1000, failureRate: 5, failureBurst: 20}
oidc: {issuer: "https://idp.example", audience: rung, jwksFile: /etc/rung/jwks.json, tenantClaim: grp}
`), 0o644)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.MetricsListen != "127.0.0.1:9440" || time.Duration(c.StoreTimeout) != 3*time.Second || c.SecretKeyFile != "/etc/rung/secrets.key" ||
		c.Limits.TokenRate != 50 || c.Limits.FailureBurst != 20 || c.OIDC == nil || c.OIDC.TenantClaim != "grp" || c.OIDC.Audience != "rung" {
		t.Errorf("config %+v (oidc %+v)", c, c.OIDC)
	}
}
