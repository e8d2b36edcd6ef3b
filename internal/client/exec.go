package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/gorilla/websocket"

	"rung.dev/rung/internal/server/wire"
)

// ExecIO connects a remote command to local streams; nil means none.
type ExecIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Tty            bool
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
	var wmu sync.Mutex
	if stdio.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdio.Stdin.Read(buf)
				if n > 0 {
					wmu.Lock()
					werr := conn.WriteMessage(websocket.BinaryMessage, append([]byte{wire.ExecStdin}, buf[:n]...))
					wmu.Unlock()
					if werr != nil {
						return
					}
				}
				if err != nil {
					wmu.Lock()
					_ = conn.WriteMessage(websocket.BinaryMessage, []byte{wire.ExecClose, wire.ExecStdin})
					wmu.Unlock()
					return
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		conn.Close() // unblocks the read below
	}()
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("exec %s/%s/%d: the stream ended without an exit code: %w", tenant, name, index, err)
		}
		if typ != websocket.BinaryMessage || len(msg) == 0 {
			continue
		}
		switch msg[0] {
		case wire.ExecStdout:
			if stdio.Stdout != nil {
				_, _ = stdio.Stdout.Write(msg[1:])
			}
		case wire.ExecStderr:
			if stdio.Stderr != nil {
				_, _ = stdio.Stderr.Write(msg[1:])
			}
		case wire.ExecStatus:
			var res wire.ExecResult
			if err := json.Unmarshal(msg[1:], &res); err != nil {
				return -1, fmt.Errorf("exec %s/%s/%d: status: %w", tenant, name, index, err)
			}
			if res.Error != "" {
				return res.ExitCode, errors.New(res.Error)
			}
			return res.ExitCode, nil
		}
	}
}
