package server

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/auth"
	"rung.dev/rung/internal/execstream"
	"rung.dev/rung/internal/server/wire"
)

// `rung exec` (DESIGN §8): a command inside one running replica, with the
// replica's own user namespace, seccomp, no_new_privs and no capabilities
// (the node's runtime.Exec does that), streamed over a WebSocket (see
// wire.ExecProtocol), for tenant admins of the replica's tenant and
// operators; every exec is audited with its command line.

// ExecFunc runs a command in a replica of this process's own node agent.
type ExecFunc = execstream.Func

// SetLocalExec lets exec reach the replicas of `rung up`'s own node agent,
// which is node (or every node without an agent of its own, for "").
func (s *Server) SetLocalExec(node string, f ExecFunc) {
	s.nodes.mu.Lock()
	defer s.nodes.mu.Unlock()
	s.nodes.execNode, s.nodes.execLocal = node, f
}

// Bounds of one exec request.
const (
	maxExecArgs   = 256
	maxExecArgLen = 4096
	// resultExecuted is the audit result of an exec that ran.
	resultExecuted = "executed"
)

// execReplica handles GET /v1/tenants/{tenant}/workloads/{name}/replicas/{index}/exec
// ?command=ARG&command=ARG…[&stdin=1][&tty=1].
func (s *Server) execReplica(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tenant, name, err := pathNames(r)
	if err != nil {
		return err
	}
	index, err := strconv.Atoi(r.PathValue("index"))
	if err != nil || index < 0 || index > v1.MaxReplicas {
		return badRequest("replica %q: want its index, a number from 0", truncate(r.PathValue("index"), 16))
	}
	obj := kindWorkload.object(tenant, name)
	if err := s.authorize(ctx, auth.Exec, obj, name); err != nil {
		return err
	}
	q := r.URL.Query()
	args := q["command"]
	if len(args) == 0 || args[0] == "" {
		return badRequest("command: missing; pass the command and its arguments as command=ARG, one each (rung exec WORKLOAD -- CMD ARGS…)")
	}
	if len(args) > maxExecArgs {
		return badRequest("command: %d arguments, at most %d", len(args), maxExecArgs)
	}
	for i, a := range args {
		if len(a) > maxExecArgLen || strings.ContainsRune(a, 0) {
			return badRequest("command[%d]: longer than %d bytes or holds a NUL byte", i, maxExecArgLen)
		}
	}
	if err := s.workloadExists(ctx, tenant, name); err != nil {
		return err
	}
	found, err := s.findReplica(ctx, tenant, name, index)
	if err != nil {
		return err
	}
	rp := &found
	switch {
	case rp.Node == "":
		return newError(http.StatusConflict, wire.CodeConflict, "replica %s/%s/%d is not placed: %s", tenant, name, index, rp.Reason)
	case rp.State != wire.ReplicaRunning && rp.State != wire.ReplicaStarting && rp.State != wire.ReplicaUnhealthy:
		msg := fmt.Sprintf("replica %s/%s/%d is %s, not running", tenant, name, index, rp.State)
		if rp.LastError != "" {
			msg += ": " + rp.LastError
		}
		return newError(http.StatusConflict, wire.CodeConflict, "%s", msg)
	}
	local, tunnel, err := s.nodes.execOn(rp.Node)
	if err != nil {
		return err
	}
	p := principal(ctx)
	e := Entry{Actor: actor(p), ActorTenant: p.Tenant, Action: "exec", Kind: v1.KindWorkload, Tenant: tenant, Name: name,
		Result: resultExecuted, RequestID: requestID(ctx),
		Message: fmt.Sprintf("replica %d on node %s: %s", index, rp.Node, truncate(strings.Join(args, " "), 2048))}
	if _, err := s.commit(ctx, e); err != nil {
		return fmt.Errorf("audit exec: %w", err)
	}

	conn, err := execstream.Upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // the upgrader answered the client
	}
	defer conn.Close()
	// The server's read and write timeouts do not apply to the stream.
	_ = conn.NetConn().SetDeadline(time.Time{})
	if tunnel != nil {
		// The node's agent runs it, reached through its tunnel (tunnel.go).
		far, err := tunnel.dialExec(ctx, rp.ID, r.URL.RawQuery)
		if err != nil {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, truncate(err.Error(), 100)), time.Now().Add(5*time.Second))
			return nil
		}
		execstream.Relay(conn, far)
		return nil
	}
	execstream.Serve(ctx, conn, local, rp.ID, args, q)
	return nil
}

// reach says how to reach node's replicas: through a remote agent's
// tunnel, or locally (this process's own agent runs the node); an error
// when neither is there.
func (n *nodes) reach(node string) (local bool, t *tunnel, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t := n.tunnels[node]; t != nil {
		return false, t, nil
	}
	if n.localKnown && (n.execNode == "" || n.execNode == node) && n.seen[node] == nil {
		return true, nil, nil
	}
	return false, nil, &httpError{Status: http.StatusServiceUnavailable, Code: wire.CodeUnavailable,
		Msg: fmt.Sprintf("node %s's agent is not connected to the control plane (its tunnel is down); retry when the node is up", node)}
}

// execOn is reach for exec: the local exec, or the tunnel.
func (n *nodes) execOn(node string) (ExecFunc, *tunnel, error) {
	return reachLocal(n, node, func() (ExecFunc, bool) { return n.execLocal, n.execLocal != nil }, "this control plane's agent can't exec")
}

// reachLocal is reach with the local agent's handler, which local reads
// under n.mu: the handler, or the tunnel; no handler is a 501 that says
// missing.
func reachLocal[F any](n *nodes, node string, local func() (F, bool), missing string) (F, *tunnel, error) {
	var none F
	isLocal, t, err := n.reach(node)
	if err != nil || !isLocal {
		return none, t, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := local()
	if !ok {
		return none, nil, newError(http.StatusNotImplemented, "not_implemented", "%s", missing)
	}
	return f, nil, nil
}
