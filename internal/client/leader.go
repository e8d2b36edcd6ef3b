package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"rung.dev/rung/internal/server/wire"
)

// Leader says which control plane schedules (operators).
func (c *Client) Leader(ctx context.Context) (wire.Leader, error) {
	var l wire.Leader
	_, err := c.do(ctx, http.MethodGet, "/v1/leader", nil, nil, &l)
	return l, err
}

// HeartbeatLease is Heartbeat, returning the lease the control plane
// granted with it (0 when it grants none): how long, from when the
// heartbeat was sent, the node may run its replicas without renewing.
func (c *Client) HeartbeatLease(ctx context.Context, node string, hb wire.Heartbeat) (time.Duration, error) {
	body, err := json.Marshal(hb)
	if err != nil {
		return 0, err
	}
	h, err := c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(node)+"/heartbeat", nil, body, nil)
	if err != nil {
		return 0, err
	}
	lease, err := time.ParseDuration(h.Get(wire.LeaseHeader))
	if err != nil || lease < 0 {
		return 0, nil
	}
	return lease, nil
}
