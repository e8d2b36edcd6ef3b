package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"rung.dev/rung/internal/server/wire"
)

// NewToken makes a token as req asks (role, tenant or node, name,
// description, TTL); the answer holds the token, shown only this once.
func (c *Client) NewToken(ctx context.Context, req wire.TokenRequest) (wire.TokenResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return wire.TokenResponse{}, err
	}
	var t wire.TokenResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &t)
	return t, err
}

// ListTokens returns one page of tokens (operators only): at most limit
// (0 for the server's default) after the page cont names ("" for the
// first). The answer's Continue names the next page.
func (c *Client) ListTokens(ctx context.Context, limit int, cont string) (wire.TokenList, error) {
	var l wire.TokenList
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", pageQuery(limit, cont), nil, &l)
	return l, err
}

// AllTokens lists every token, page by page.
func (c *Client) AllTokens(ctx context.Context) ([]wire.TokenInfo, error) {
	var out []wire.TokenInfo
	cont := ""
	for {
		l, err := c.ListTokens(ctx, 0, cont)
		if err != nil {
			return nil, err
		}
		out = append(out, l.Items...)
		if cont = l.Continue; cont == "" {
			return out, nil
		}
	}
}

// RevokeToken deletes the token with id: it stops working at once.
func (c *Client) RevokeToken(ctx context.Context, id string) (wire.DeleteResult, error) {
	var res wire.DeleteResult
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, &res)
	return res, err
}

// RotateAdminToken makes a new admin token and revokes the earlier ones;
// rung up writes the new one to its admin.token file and client configs.
func (c *Client) RotateAdminToken(ctx context.Context) (wire.TokenResponse, error) {
	var t wire.TokenResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/tokens/admin/rotate", nil, nil, &t)
	return t, err
}

// pageQuery is ?limit=&continue= for a list page.
func pageQuery(limit int, cont string) url.Values {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cont != "" {
		q.Set("continue", cont)
	}
	return q
}
