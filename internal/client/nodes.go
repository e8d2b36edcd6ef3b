package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/server/wire"
)

// CreateNodeToken makes a token of role node for node: it may only
// heartbeat as that node and read its desired replicas.
func (c *Client) CreateNodeToken(ctx context.Context, node, description string) (wire.TokenResponse, error) {
	body, err := json.Marshal(wire.TokenRequest{Role: "node", Node: node, Description: description})
	if err != nil {
		return wire.TokenResponse{}, err
	}
	var t wire.TokenResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/tokens", nil, body, &t)
	return t, err
}

// Heartbeat tells the control plane that node is alive and what it runs.
func (c *Client) Heartbeat(ctx context.Context, node string, hb wire.Heartbeat) error {
	body, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(node)+"/heartbeat", nil, body, nil)
	return err
}

// NodeReplicas returns the replicas node must run under the current plan.
func (c *Client) NodeReplicas(ctx context.Context, node string) ([]replica.Spec, error) {
	var r wire.NodeReplicas
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/replicas", nil, nil, &r); err != nil {
		return nil, err
	}
	return r.Replicas, nil
}

// NodeVolumeDeletions returns the deleted volumes node must wipe.
func (c *Client) NodeVolumeDeletions(ctx context.Context, node string) ([]wire.VolumeDeletion, error) {
	var r wire.VolumeDeletions
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/volumedeletions", nil, nil, &r); err != nil {
		return nil, err
	}
	return r.Deletions, nil
}

// Nodes lists every node with its liveness (operators), reading every page.
func (c *Client) Nodes(ctx context.Context) (wire.Nodes, error) {
	all := wire.Nodes{Nodes: []wire.NodeStatus{}}
	cont := ""
	for {
		n, err := c.NodesPage(ctx, 0, cont)
		if err != nil {
			return wire.Nodes{}, err
		}
		all.Nodes, all.Timeout = append(all.Nodes, n.Nodes...), n.Timeout
		if cont = n.Continue; cont == "" {
			return all, nil
		}
	}
}

// NodesPage lists one page of nodes: at most limit (0: the server's
// default) after the continue token cont.
func (c *Client) NodesPage(ctx context.Context, limit int, cont string) (wire.Nodes, error) {
	var n wire.Nodes
	_, err := c.do(ctx, http.MethodGet, "/v1/nodes", pageQuery(limit, cont), nil, &n)
	return n, err
}

// NodeSecret returns a Secret's values for a replica planned on node (a
// node token's call; the control plane audits it).
func (c *Client) NodeSecret(ctx context.Context, node, tenant, name string) (map[string]string, error) {
	var data map[string]string
	_, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/secrets/"+url.PathEscape(tenant)+"/"+url.PathEscape(name), nil, nil, &data)
	return data, err
}

// NodePeers returns the other live nodes with tenant networks, for node.
func (c *Client) NodePeers(ctx context.Context, node string) ([]wire.Peer, error) {
	var r wire.NodePeers
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/peers", nil, nil, &r); err != nil {
		return nil, err
	}
	return r.Peers, nil
}
