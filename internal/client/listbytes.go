package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// ListPageTo copies ListPage's answer, undecoded, to w: for a load
// generator that stands for clients elsewhere, whose decoding should not
// take this machine's CPU (`rung bench api --listers`).
func (c *Client) ListPageTo(ctx context.Context, kind, tenant string, limit int, cont string, w io.Writer) error {
	p, err := Ref{Kind: kind, Tenant: tenant}.path()
	if err != nil {
		return err
	}
	req, err := c.request(ctx, http.MethodGet, p, pageQuery(limit, cont), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return fmt.Errorf("GET %s: read answer: %w", p, err)
		}
		return errorOf(http.MethodGet, p, resp, data)
	}
	if _, err := io.Copy(w, io.LimitReader(resp.Body, 256<<20)); err != nil {
		return fmt.Errorf("GET %s: read answer: %w", p, err)
	}
	return nil
}
