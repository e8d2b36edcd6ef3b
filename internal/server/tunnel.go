package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/yamux"

	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/server/wire"
)

// Tunnels: the control plane reaches a remote agent's replicas (exec,
// logs) through a connection the agent opens, as Nomad's clients do with
// yamux: the agent dials GET /v1/nodes/{name}/tunnel with its node token,
// the connection is upgraded (101, wire.TunnelProtocol) and carries a
// yamux session in which the control plane opens streams to the agent's
// small HTTP API (agent/tunnel.go). Agents need no listening port, and a
// node token reaches nothing but its own node.

// tunnel is one connected agent.
type tunnel struct {
	node string
	sess *yamux.Session
}

// dialExec opens an exec stream to replica id on the tunnel's node, with
// the client's query (command, stdin, tty).
func (t *tunnel) dialExec(ctx context.Context, id, rawQuery string) (*websocket.Conn, error) {
	d := websocket.Dialer{
		NetDialContext:  func(context.Context, string, string) (net.Conn, error) { return t.sess.Open() },
		Subprotocols:    []string{wire.ExecProtocol},
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
	}
	u := "ws://" + t.node + "/v1/replicas/" + url.PathEscape(id) + "/exec?" + rawQuery
	conn, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("node %s: exec: %s", t.node, resp.Status)
		}
		return nil, fmt.Errorf("node %s: exec: %w", t.node, err)
	}
	return conn, nil
}

// get sends a GET to the agent's API over the tunnel.
func (t *tunnel) get(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext:       func(context.Context, string, string) (net.Conn, error) { return t.sess.Open() },
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.node+path+"?"+query.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return hc.Do(req)
}

// nodeTunnel accepts a node agent's tunnel (GET /v1/nodes/{name}/tunnel).
func (s *Server) nodeTunnel(w http.ResponseWriter, r *http.Request) error {
	name, err := s.nodeName(r, auth.Apply)
	if err != nil {
		return err
	}
	if r.Header.Get("Upgrade") != wire.TunnelProtocol {
		return badRequest("a tunnel needs Connection: Upgrade and Upgrade: %s (rung agent opens it)", wire.TunnelProtocol)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+wire.TunnelProtocol+"\r\n\r\n"); err != nil {
		conn.Close()
		return nil
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(bufferedConn{Reader: brw.Reader, Conn: conn}, cfg)
	if err != nil {
		conn.Close()
		return nil
	}
	t := &tunnel{node: name, sess: sess}
	s.nodes.mu.Lock()
	old := s.nodes.tunnels[name]
	s.nodes.tunnels[name] = t
	s.nodes.mu.Unlock()
	if old != nil {
		old.sess.Close()
	}
	s.log.Info("node tunnel up", "node", name)
	select {
	case <-sess.CloseChan():
	case <-s.closing:
		sess.Close()
	}
	s.nodes.mu.Lock()
	if s.nodes.tunnels[name] == t {
		delete(s.nodes.tunnels, name)
	}
	s.nodes.mu.Unlock()
	s.log.Info("node tunnel down", "node", name)
	return nil
}

// bufferedConn reads what the HTTP server buffered before the upgrade
// first.
type bufferedConn struct {
	*bufio.Reader
	net.Conn
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.Reader.Read(p) }
