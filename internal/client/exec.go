package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gorilla/websocket"

	"rung.dev/rung/internal/execstream"
	"rung.dev/rung/internal/server/wire"
)

// ExecIO connects a remote command to local streams; nil means none.
type ExecIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Tty            bool
	// Resize, with Tty, carries the local terminal's sizes.
	Resize <-chan wire.TermSize
}

// Exec runs args in replica index of workload tenant/name and relays its
// streams until it ends (wire.ExecProtocol). It returns the command's exit
// code, and the error the server gave when the command could not run.
func (c *Client) Exec(ctx context.Context, tenant, name string, index int, args []string, stdio ExecIO) (int, error) {
	path := "/v1/tenants/" + url.PathEscape(tenant) + "/workloads/" + url.PathEscape(name) + "/replicas/" + strconv.Itoa(index) + "/exec"
	q := url.Values{"command": args}
	if stdio.Stdin != nil {
		q.Set("stdin", "1")
	}
	if stdio.Tty {
		q.Set("tty", "1")
		// The size the terminal starts with, when it is known already.
		select {
		case sz, ok := <-stdio.Resize:
			if ok {
				q.Set("width", strconv.Itoa(int(sz.Width)))
				q.Set("height", strconv.Itoa(int(sz.Height)))
			}
		default:
		}
	}
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	d := websocket.Dialer{Subprotocols: []string{wire.ExecProtocol}, Proxy: http.ProxyFromEnvironment}
	if t, ok := c.http.Transport.(*http.Transport); ok && t != nil {
		d.TLSClientConfig = t.TLSClientConfig
	}
	hdr := http.Header{}
	if c.token != "" {
		hdr.Set("Authorization", "Bearer "+c.token)
	}
	conn, resp, err := d.DialContext(ctx, u.String(), hdr)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			return -1, errorOf(http.MethodGet, path, resp, data)
		}
		return -1, fmt.Errorf("exec %s/%s/%d: %w", tenant, name, index, err)
	}
	defer conn.Close()
	code, err := execstream.Run(ctx, conn, execstream.IO{Stdin: stdio.Stdin, Stdout: stdio.Stdout, Stderr: stdio.Stderr, Resize: stdio.Resize})
	if err != nil && code == -1 && ctx.Err() == nil {
		return code, fmt.Errorf("exec %s/%s/%d: %w", tenant, name, index, err)
	}
	return code, err
}

// Tunnel opens node's tunnel to the control plane (a node token's call):
// the upgraded connection, which then carries a yamux session.
func (c *Client) Tunnel(ctx context.Context, node string) (io.ReadWriteCloser, error) {
	path := "/v1/nodes/" + url.PathEscape(node) + "/tunnel"
	req, err := c.request(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", wire.TunnelProtocol)
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, errorOf(http.MethodGet, path, resp, data)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, errors.New("tunnel: the upgraded connection is not writable")
	}
	return rwc, nil
}
