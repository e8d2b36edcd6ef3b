package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"rung.dev/rung/internal/server/wire"
)

// Logs returns the tails of the logs of workload tenant/name's replicas:
// only replica's when replica >= 0, and the last tail lines of each when
// tail > 0.
func (c *Client) Logs(ctx context.Context, tenant, name string, replica, tail int) (wire.WorkloadLogs, error) {
	q := url.Values{}
	if replica >= 0 {
		q.Set("replica", strconv.Itoa(replica))
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	var out wire.WorkloadLogs
	_, err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/workloads/"+url.PathEscape(name)+"/logs", q, nil, &out)
	return out, err
}
