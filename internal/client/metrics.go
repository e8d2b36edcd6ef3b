package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Metrics returns the Prometheus text of /metrics, which needs an
// operator token.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	u := *c.base
	u.Path += "/metrics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &Error{Status: resp.StatusCode, Code: codeFor(resp.StatusCode), Message: "GET /metrics: " + resp.Status}
	}
	return data, nil
}
