package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/logfile"
	"rung.dev/rung/internal/server/wire"
)

// One replica's log (`rung logs WORKLOAD/INDEX [-f] [--previous] [--since]
// [--tail]`, DESIGN §8): read from its node (this process's own agent, or
// a remote agent through its tunnel) and streamed as it is, so -f follows
// new lines.

// LogsFunc opens a replica's log on this process's own node agent.
type LogsFunc func(ctx context.Context, id string, o logfile.ReadOptions) (io.ReadCloser, error)

// SetLocalLogs lets the log endpoint read the replicas of `rung up`'s own
// agent (see SetLocalExec for node).
func (s *Server) SetLocalLogs(f LogsFunc) {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	s.nodes.logsLocal = f
}

// replicaLog handles GET /v1/tenants/{tenant}/workloads/{name}/replicas/{index}/log.
func (s *Server) replicaLog(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, err := pathNames(r)
	if err != nil {
		return err
	}
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 || index > v1.MaxReplicas {
		return badRequest("replica %q: want its index, a number from 0", truncate(r.PathValue("index"), 16))
	}
	if err := s.authorize(ctx, auth.Get, kindWorkload.object(tenant, name), name); err != nil {
		return err
	}
	o, err := logfile.ParseQuery(r.URL.Query())
	if err != nil {
		return badRequest("%v", err)
	}
	if err := s.workloadExists(ctx, tenant, name); err != nil {
		return err
	}
	rp, err := s.findReplica(ctx, tenant, name, index)
	if err != nil {
		return err
	}
	if rp.Node == "" {
		return newError(http.StatusConflict, wire.CodeConflict, "replica %s/%s/%d has no log: it is not placed: %s", tenant, name, index, rp.Reason)
	}
	never := func() error {
		msg := fmt.Sprintf("replica %s/%s/%d has no log yet: it is %s", tenant, name, index, rp.State)
		if rp.LastError != "" {
			msg += ": " + rp.LastError
		}
		return newError(http.StatusNotFound, wire.CodeNotFound, "%s", msg)
	}
	if rp.StartedAt.IsZero() && rp.LastError != "" && !o.Previous {
		return never() // it never started: say why rather than an empty log
	}
	var body io.ReadCloser
	local, t, err := s.nodes.logsOn(rp.Node)
	switch {
	case err != nil:
		return err
	case t != nil:
		resp, err := t.get(ctx, "/v1/replicas/"+url.PathEscape(rp.ID)+"/log", logfile.Query(o))
		if err != nil {
			return &httpError{Status: http.StatusBadGateway, Code: wire.CodeUnavailable, Msg: "node " + rp.Node + " did not answer", Err: err}
		}
		if resp.StatusCode == http.StatusNotFound {
			resp.Body.Close()
			return never()
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return newError(http.StatusBadGateway, wire.CodeUnavailable, "node %s: %s", rp.Node, resp.Status)
		}
		body = resp.Body
	default:
		rc, err := local(ctx, rp.ID, o)
		if err != nil {
			return never()
		}
		body = rc
	}
	defer body.Close()
	rc := http.NewResponseController(w)
	if o.Follow {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	copyFlushing(w, rc, body)
	return nil
}

// copyFlushing copies src to w, flushing after each read so a follower
// sees lines as they come.
func copyFlushing(w io.Writer, rc *http.ResponseController, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// findReplica is replica index of tenant/name in the caller's view.
func (s *Server) findReplica(ctx context.Context, tenant, name string, index int) (wire.Replica, error) {
	view, err := s.replicaView(ctx, principal(ctx))
	if err != nil {
		return wire.Replica{}, err
	}
	for _, rp := range view {
		if rp.Workload == tenant+"/"+name && rp.Index == index {
			return rp, nil
		}
	}
	return wire.Replica{}, newError(http.StatusNotFound, wire.CodeNotFound, "replica %s/%s/%d not found (the workload has fewer replicas)", tenant, name, index)
}

// logsOn is reach for logs: the local reader, or the tunnel.
func (n *nodes) logsOn(node string) (LogsFunc, *tunnel, error) {
	return reachLocal(n, node, func() (LogsFunc, bool) { return n.logsLocal, n.logsLocal != nil }, "this control plane's agent keeps no logs")
}
