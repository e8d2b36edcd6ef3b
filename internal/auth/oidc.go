package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// OIDCConfig is how an operator lets an identity provider's JWTs in:
// tokens are verified offline against the keys of a JWKS file, and two
// claims say the tenant and the role.
type OIDCConfig struct {
	// Issuer must equal the token's "iss" claim.
	Issuer string `json:"issuer"`
	// Audience must be one of the token's "aud" values.
	Audience string `json:"audience"`
	// JWKSFile holds the issuer's public keys (a JSON Web Key Set); every
	// key needs a "kid", which tokens name in their header.
	JWKSFile string `json:"jwksFile"`
	// TenantClaim names the claim with the tenant (default "rung_tenant");
	// operators have none.
	TenantClaim string `json:"tenantClaim,omitempty"`
	// RoleClaim names the claim with the role (default "rung_role"):
	// operator, tenant-admin or tenant-viewer.
	RoleClaim string `json:"roleClaim,omitempty"`
}

// ErrOIDCConfig: an OIDC configuration that cannot be used.
var ErrOIDCConfig = errors.New("invalid oidc configuration")

// oidcAlgorithms are the signature algorithms accepted; "none" and HMAC
// (which would make the public keys secrets) are not.
var oidcAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// maxJWT bounds the size of a bearer JWT, so that parsing costs little.
const maxJWT = 16 << 10

// OIDC verifies JWTs of one issuer.
type OIDC struct {
	cfg  OIDCConfig
	keys jose.JSONWebKeySet
}

// NewOIDC checks cfg and parses jwks, the content of cfg.JWKSFile (read
// by the caller: this package does no I/O); errors name the field and the
// fix.
func NewOIDC(cfg OIDCConfig, jwks []byte) (*OIDC, error) {
	switch {
	case cfg.Issuer == "":
		return nil, fmt.Errorf("oidc.issuer: %w: missing; give the issuer URL the tokens carry in \"iss\"", ErrOIDCConfig)
	case cfg.Audience == "":
		return nil, fmt.Errorf("oidc.audience: %w: missing; give the audience (client id) the tokens carry in \"aud\"", ErrOIDCConfig)
	case cfg.JWKSFile == "":
		return nil, fmt.Errorf("oidc.jwksFile: %w: missing; give the path of the issuer's JWKS file", ErrOIDCConfig)
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "rung_tenant"
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "rung_role"
	}
	data := jwks
	o := &OIDC{cfg: cfg}
	if err := json.Unmarshal(data, &o.keys); err != nil {
		return nil, fmt.Errorf("oidc.jwksFile %s: %w: not a JSON Web Key Set: %v", cfg.JWKSFile, ErrOIDCConfig, err)
	}
	if len(o.keys.Keys) == 0 {
		return nil, fmt.Errorf("oidc.jwksFile %s: %w: no keys", cfg.JWKSFile, ErrOIDCConfig)
	}
	for i, k := range o.keys.Keys {
		switch {
		case k.KeyID == "":
			return nil, fmt.Errorf("oidc.jwksFile %s: keys[%d]: %w: no \"kid\"; tokens pick their key by kid", cfg.JWKSFile, i, ErrOIDCConfig)
		case !k.IsPublic():
			return nil, fmt.Errorf("oidc.jwksFile %s: keys[%d] (%s): %w: not a public key; give the issuer's public keys only", cfg.JWKSFile, i, k.KeyID, ErrOIDCConfig)
		}
	}
	return o, nil
}

// LooksLikeJWT reports whether a bearer token has a JWT's shape (three
// dot-separated parts), as rung's own tokens never do.
func LooksLikeJWT(token string) bool {
	return len(token) <= maxJWT && strings.Count(token, ".") == 2
}

// Verify checks token's signature against the JWKS, its issuer, audience
// and times (it must have an expiry), and maps its claims to a
// principal. Every failure wraps ErrBadToken.
func (o *OIDC) Verify(token string, now time.Time) (Principal, error) {
	if !LooksLikeJWT(token) {
		return Principal{}, ErrBadToken
	}
	tok, err := jwt.ParseSigned(token, oidcAlgorithms)
	if err != nil {
		return Principal{}, fmt.Errorf("jwt: %w: %v", ErrBadToken, err)
	}
	var std jwt.Claims
	custom := map[string]any{}
	if err := tok.Claims(o.keys, &std, &custom); err != nil {
		return Principal{}, fmt.Errorf("jwt: %w: %v", ErrBadToken, err)
	}
	if std.Expiry == nil {
		return Principal{}, fmt.Errorf("jwt: %w: no exp claim", ErrBadToken)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: o.cfg.Issuer, AnyAudience: jwt.Audience{o.cfg.Audience}, Time: now}, 30*time.Second); err != nil {
		return Principal{}, fmt.Errorf("jwt: %w: %v", ErrBadToken, err)
	}
	role, _ := custom[o.cfg.RoleClaim].(string)
	tenant, _ := custom[o.cfg.TenantClaim].(string)
	r, err := ParseRole(role)
	if err != nil || r == NodeAgent {
		return Principal{}, fmt.Errorf("jwt: %w: claim %s %q is not operator, tenant-admin or tenant-viewer", ErrBadToken, o.cfg.RoleClaim, truncate(role, 32))
	}
	sub := std.Subject
	if sub == "" {
		return Principal{}, fmt.Errorf("jwt: %w: no sub claim", ErrBadToken)
	}
	p := Principal{ID: "oidc:" + truncate(sub, 64), Role: r, Tenant: tenant}
	if err := p.Validate(); err != nil {
		return Principal{}, fmt.Errorf("jwt: %w: %v", ErrBadToken, err)
	}
	return p, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
