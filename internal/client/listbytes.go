package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// ListPageBytes is ListPage's answer as the server sent it, undecoded:
// for a load generator that stands for clients elsewhere, whose decoding
// should not take this machine's CPU (`rung bench api --listers`).
func (c *Client) ListPageBytes(ctx context.Context, kind, tenant string, limit int, cont string) ([]byte, error) {
	p, err := Ref{Kind: kind, Tenant: tenant}.path()
	if err != nil {
		return nil, err
	}
	req, err := c.request(ctx, http.MethodGet, p, pageQuery(limit, cont), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", p, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read answer: %w", p, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, errorOf(http.MethodGet, p, resp, data)
	}
	return data, nil
}
