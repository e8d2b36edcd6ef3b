package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"rung.dev/rung/internal/server/wire"
)

// replicasPath is the list of replicas of a workload, a tenant, or all.
func replicasPath(tenant, workload string) string {
	switch {
	case workload != "":
		return "/v1/tenants/" + url.PathEscape(tenant) + "/workloads/" + url.PathEscape(workload) + "/replicas"
	case tenant != "":
		return "/v1/tenants/" + url.PathEscape(tenant) + "/replicas"
	}
	return "/v1/replicas"
}

// Replicas lists replicas with their status: of one workload, of a tenant
// (workload ""), or every one the token may see (both "").
func (c *Client) Replicas(ctx context.Context, tenant, workload string) ([]wire.Replica, error) {
	all := []wire.Replica{}
	cont := ""
	for {
		r, err := c.ReplicasPage(ctx, tenant, workload, 0, cont)
		if err != nil {
			return nil, err
		}
		all = append(all, r.Items...)
		if cont = r.Continue; cont == "" {
			return all, nil
		}
	}
}

// ReplicasPage lists one page of replicas: at most limit (0: the server's
// default) after the continue token cont.
func (c *Client) ReplicasPage(ctx context.Context, tenant, workload string, limit int, cont string) (wire.Replicas, error) {
	var r wire.Replicas
	_, err := c.do(ctx, http.MethodGet, replicasPath(tenant, workload), pageQuery(limit, cont), nil, &r)
	return r, err
}

// WatchReplicas streams the replicas' changes to fn (first each replica as
// ADDED) until ctx ends, the server ends the stream, or fn fails.
func (c *Client) WatchReplicas(ctx context.Context, tenant, workload string, fn func(wire.WatchEvent, wire.Replica) error) error {
	return c.watchPath(ctx, replicasPath(tenant, workload), func(ev wire.WatchEvent) error {
		var r wire.Replica
		if err := json.Unmarshal(ev.Object, &r); err != nil {
			return fmt.Errorf("watch replicas: %w", err)
		}
		return fn(ev, r)
	})
}

// WatchNodes streams the nodes' changes (operators), as WatchReplicas.
func (c *Client) WatchNodes(ctx context.Context, fn func(wire.WatchEvent, wire.NodeStatus) error) error {
	return c.watchPath(ctx, "/v1/nodes", func(ev wire.WatchEvent) error {
		var n wire.NodeStatus
		if err := json.Unmarshal(ev.Object, &n); err != nil {
			return fmt.Errorf("watch nodes: %w", err)
		}
		return fn(ev, n)
	})
}

// watchPath reads the ?watch=1 stream of a list at path, one event a line.
func (c *Client) watchPath(ctx context.Context, path string, fn func(wire.WatchEvent) error) error {
	resp, err := c.stream(ctx, http.MethodGet, path, url.Values{"watch": {"1"}}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var ev wire.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch %s: %w", path, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// Watch streams the changes of a list of stored objects (kind, of tenant
// or every visible one) to fn: first every object as ADDED, then each
// change, until ctx ends, the server ends the stream, or fn fails.
func (c *Client) Watch(ctx context.Context, kind, tenant string, fn func(wire.WatchEvent) error) error {
	p, err := Ref{Kind: kind, Tenant: tenant}.path()
	if err != nil {
		return err
	}
	return c.watchPath(ctx, p, fn)
}

// Rollout returns where workload tenant/name's rollout stands and its
// earlier versions.
func (c *Client) Rollout(ctx context.Context, tenant, name string) (wire.Rollout, error) {
	var r wire.Rollout
	_, err := c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/workloads/"+url.PathEscape(name)+"/rollout", nil, nil, &r)
	return r, err
}

// WatchEvents streams the events the token may see from now on (after
// seq after, when positive) to fn, until ctx ends or fn fails.
func (c *Client) WatchEvents(ctx context.Context, after int64, fn func(wire.Event) error) error {
	q := url.Values{"watch": {"1"}}
	if after > 0 {
		q.Set("after", fmt.Sprint(after))
	}
	resp, err := c.stream(ctx, http.MethodGet, "/v1/events", q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev wire.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch events: %w", err)
		}
		var e wire.Event
		if err := json.Unmarshal(ev.Object, &e); err != nil {
			return fmt.Errorf("watch events: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
