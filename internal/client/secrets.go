package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/server/wire"
)

func secretPath(tenant, name string) string {
	p := "/v1/tenants/" + url.PathEscape(tenant) + "/secrets"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// ApplySecret creates or updates a Secret; its values are sealed by the
// server and never shown again.
func (c *Client) ApplySecret(ctx context.Context, s *v1.Secret) (wire.ApplyResult, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return wire.ApplyResult{}, err
	}
	var res wire.ApplyResult
	_, err = c.do(ctx, http.MethodPut, secretPath(s.Metadata.Tenant, s.Metadata.Name), nil, body, &res)
	return res, err
}

// GetSecret shows a Secret's keys and their digests (never the values).
func (c *Client) GetSecret(ctx context.Context, tenant, name string) (wire.SecretInfo, error) {
	var s wire.SecretInfo
	_, err := c.do(ctx, http.MethodGet, secretPath(tenant, name), nil, nil, &s)
	return s, err
}

// ListSecrets returns one page of secrets (of tenant, or every visible
// one for ""); the answer's Continue names the next.
func (c *Client) ListSecrets(ctx context.Context, tenant string, limit int, cont string) (wire.SecretList, error) {
	p := "/v1/secrets"
	if tenant != "" {
		p = secretPath(tenant, "")
	}
	var l wire.SecretList
	_, err := c.do(ctx, http.MethodGet, p, pageQuery(limit, cont), nil, &l)
	return l, err
}

// DeleteSecret removes a Secret.
func (c *Client) DeleteSecret(ctx context.Context, tenant, name string) (wire.DeleteResult, error) {
	var res wire.DeleteResult
	_, err := c.do(ctx, http.MethodDelete, secretPath(tenant, name), nil, nil, &res)
	return res, err
}

// RotateSecretKey makes a new key, seals every secret again under it and
// retires the older keys (operators only).
func (c *Client) RotateSecretKey(ctx context.Context) (wire.KeyRotation, error) {
	var k wire.KeyRotation
	_, err := c.do(ctx, http.MethodPost, "/v1/secrets/rotate-key", nil, nil, &k)
	return k, err
}
