package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"rung.dev/rung/internal/logfile"
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

// ReplicaLog opens replica index of workload tenant/name's log as its node
// reads it (o: tail, since, timestamps, previous run, follow). The caller
// closes it; with o.Follow it stays open until ctx ends or the replica's
// log ends.
func (c *Client) ReplicaLog(ctx context.Context, tenant, name string, index int, o logfile.ReadOptions) (io.ReadCloser, error) {
	path := "/v1/tenants/" + url.PathEscape(tenant) + "/workloads/" + url.PathEscape(name) + "/replicas/" + strconv.Itoa(index) + "/log"
	resp, err := c.stream(ctx, http.MethodGet, path, logfile.Query(o), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
