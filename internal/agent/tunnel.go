package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/yamux"

	"rung.dev/rung/internal/execstream"
	"rung.dev/rung/internal/logfile"
)

// Tunneler is an API that opens this node's tunnel to the control plane
// (client.Client does): the control plane reaches the node's replicas
// (exec, logs) through it, so agents need no listening port.
type Tunneler interface {
	Tunnel(ctx context.Context, node string) (io.ReadWriteCloser, error)
}

// tunnelRetry is how long the agent waits before dialing a lost tunnel.
const tunnelRetry = 2 * time.Second

// keepTunnel keeps the node's tunnel open until ctx ends, serving h over
// it: each stream the control plane opens is one HTTP connection.
func keepTunnel(ctx context.Context, api Tunneler, node string, h http.Handler, log *slog.Logger) {
	for ctx.Err() == nil {
		conn, err := api.Tunnel(ctx, node)
		if err == nil {
			cfg := yamux.DefaultConfig()
			cfg.LogOutput = io.Discard
			if sess, err := yamux.Server(conn, cfg); err == nil {
				srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
				stop := context.AfterFunc(ctx, func() { sess.Close() })
				_ = srv.Serve(sess) // returns when the session closes
				stop()
			}
			conn.Close()
		} else if ctx.Err() == nil {
			log.Debug("tunnel to the control plane", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(tunnelRetry):
		}
	}
}

// nodeAPI is the agent's HTTP API over its tunnel: exec into a replica of
// this node. The control plane has authorized the caller already; the
// agent answers only about replicas it runs.
func nodeAPI(node Node) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/replicas/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		ex, ok := node.(Execer)
		if !ok {
			http.Error(w, "this node can't exec", http.StatusNotImplemented)
			return
		}
		q := r.URL.Query()
		args := q["command"]
		if len(args) == 0 {
			http.Error(w, "no command", http.StatusBadRequest)
			return
		}
		conn, err := execstream.Upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		execstream.Serve(r.Context(), conn, ex.Exec, r.PathValue("id"), args, q)
	})
	mux.HandleFunc("GET /v1/replicas/{id}/log", func(w http.ResponseWriter, r *http.Request) {
		ln, ok := node.(interface {
			Logs(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error)
		})
		if !ok {
			http.Error(w, "this node keeps no logs", http.StatusNotImplemented)
			return
		}
		o, err := logfile.ParseQuery(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc, err := ln.Logs(r.Context(), r.PathValue("id"), o)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		flush := http.NewResponseController(w)
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil || flush.Flush() != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	return mux
}
